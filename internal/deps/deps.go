// Package deps pins module dependencies until real code imports them.
package deps

import (
	_ "github.com/cloudevents/sdk-go/sql/v2"
	_ "github.com/cloudevents/sdk-go/v2"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/temporalio/ui-server/v2/server"
	_ "go.temporal.io/sdk/client"
	_ "go.temporal.io/sdk/testsuite"
	_ "go.temporal.io/sdk/worker"
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	_ "go.temporal.io/server/schema/sqlite"
	_ "go.temporal.io/server/temporal"
	_ "google.golang.org/grpc"
	_ "modernc.org/sqlite"
)
