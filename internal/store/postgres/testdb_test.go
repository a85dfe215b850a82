package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultDSN is the local test server (trust authentication).
// HERALD_TEST_POSTGRES_DSN overrides it.
const defaultDSN = "postgres://postgres@127.0.0.1:5432/postgres"

var (
	serverOnce sync.Once
	serverErr  error
)

func serverDSN() string {
	if dsn := os.Getenv("HERALD_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return defaultDSN
}

// requireServer skips the test when no server answers, or fails it when CI
// is "true".
func requireServer(tb testing.TB) {
	tb.Helper()
	serverOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, serverDSN())
		if err != nil {
			serverErr = err
			return
		}
		serverErr = conn.Close(ctx)
	})
	if serverErr == nil {
		return
	}
	msg := "PostgreSQL at " + serverDSN() + " is unreachable (set HERALD_TEST_POSTGRES_DSN to use another server): " + serverErr.Error()
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// OpenTestStore returns a store in a new schema of its own, dropped when
// the test ends, and the schema's name; query adds DSN parameters (e.g.
// pool_max_conns). It is in a _test.go file of this package, so that the
// tests of package postgres_test share it.
func OpenTestStore(tb testing.TB, query url.Values) (*Store, string) {
	tb.Helper()
	schema, dsn := newTestSchema(tb, query)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, schema
}

// newTestSchema creates a schema dropped when the test ends, and returns
// its name and a DSN whose search_path is that schema, with query's
// parameters added.
func newTestSchema(tb testing.TB, query url.Values) (schema, dsn string) {
	tb.Helper()
	requireServer(tb)
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema = "herald_test_" + hex.EncodeToString(b[:])

	admin, err := pgx.Connect(ctx, serverDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		admin, err := pgx.Connect(ctx, serverDSN())
		if err != nil {
			tb.Error(err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Error(err)
		}
	})

	u, err := url.Parse(serverDSN())
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	for k, v := range query {
		q[k] = v
	}
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return schema, u.String()
}

// plans returns how many times the store's connections ran statement
// query on a generic and on a custom plan, as pg_prepared_statements
// counts them (per connection: give the store a pool of one).
func plans(tb testing.TB, s *Store, query string) (generic, custom int64) {
	tb.Helper()
	err := s.pool.QueryRow(context.Background(), `SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)
FROM pg_prepared_statements WHERE statement = $1`, query).Scan(&generic, &custom)
	if err != nil {
		tb.Fatal(err)
	}
	return generic, custom
}
