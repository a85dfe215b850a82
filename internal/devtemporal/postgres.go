package devtemporal

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	postgresplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/resolver"
	"go.temporal.io/server/tools/common/schema"
)

// VisibilitySuffix ends the name of the PostgreSQL database that holds the
// visibility store, beside the one Config.PostgresURL names.
const VisibilitySuffix = "_visibility"

// The server's embedded schemas (go.temporal.io/server/schema), each a
// directory of versioned updates.
const (
	postgresSchema           = "postgresql/v12/temporal"
	postgresVisibilitySchema = "postgresql/v12/visibility"
)

// postgresMaxConns bounds each store's connections in each of the four
// services, so that a server holds at most 4 x 2 x postgresMaxConns.
const postgresMaxConns = 5

// databaseName is what CREATE DATABASE takes unquoted and PostgreSQL keeps
// as written (63 bytes at most, with room for VisibilitySuffix).
var databaseName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,51}$`)

// preparePostgres returns the SQL store configurations of the default and
// the visibility store for a postgres:// URL. It creates both databases if
// missing, sets up Temporal's schema in a new one and brings an older one up
// to this server's version (each step a no-op when done already), and
// creates the namespaces if missing.
func preparePostgres(rawURL string, namespaces []string) (store, visibility *config.SQL, err error) {
	store, err = parsePostgresURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	v := *store
	v.DatabaseName += VisibilitySuffix
	visibility = &v

	for _, db := range []struct {
		cfg    *config.SQL
		kind   sqlplugin.DbKind
		schema string
	}{
		{store, sqlplugin.DbKindMain, postgresSchema},
		{visibility, sqlplugin.DbKindVisibility, postgresVisibilitySchema},
	} {
		if err := migratePostgres(db.cfg, db.kind, db.schema); err != nil {
			return nil, nil, fmt.Errorf("temporal database %s on %s: %w", db.cfg.DatabaseName, db.cfg.ConnectAddr, err)
		}
	}
	if err := createNamespaces(store, namespaces); err != nil {
		return nil, nil, fmt.Errorf("temporal database %s on %s: %w", store.DatabaseName, store.ConnectAddr, err)
	}
	return store, visibility, nil
}

// parsePostgresURL turns postgres://user[:password]@host[:port]/database[?key=value...]
// into the postgres12 plugin's configuration; the query's keys (sslmode, ...)
// become connection attributes.
func parsePostgresURL(rawURL string) (*config.SQL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("temporal postgres URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("temporal postgres URL %s: the scheme must be postgres", u.Redacted())
	}
	if u.Hostname() == "" || u.User.Username() == "" {
		return nil, fmt.Errorf("temporal postgres URL %s: a user and a host are required", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	name := u.Path
	if len(name) > 0 && name[0] == '/' {
		name = name[1:]
	}
	if !databaseName.MatchString(name) {
		return nil, fmt.Errorf("temporal postgres URL %s: the database name must match %s", u.Redacted(), databaseName)
	}
	password, _ := u.User.Password()
	attrs := map[string]string{}
	for key, values := range u.Query() {
		attrs[key] = values[len(values)-1]
	}
	return &config.SQL{
		PluginName:        postgresplugin.PluginName,
		ConnectAddr:       net.JoinHostPort(u.Hostname(), port),
		ConnectProtocol:   "tcp",
		User:              u.User.Username(),
		Password:          password,
		DatabaseName:      name,
		ConnectAttributes: attrs,
		MaxConns:          postgresMaxConns,
		MaxIdleConns:      postgresMaxConns,
	}, nil
}

// migratePostgres creates the database cfg names if missing and brings it to
// the schema version the server expects of a store of kind, with Temporal's
// own schema tasks and the schema embedded in the server (schemaName). On a
// database without tables it runs the current schema.sql, as Temporal's SQL
// tool does for "setup-schema -s schemaName -v version". On any other it
// does what "setup-schema -v 0.0" then "update-schema -s schemaName" do: it
// creates the version tables if missing and applies, in order, every
// versioned update newer than the database's version (none when it is up to
// date; a statement whose object already exists is skipped).
func migratePostgres(cfg *config.SQL, kind sqlplugin.DbKind, schemaName string) error {
	// CREATE DATABASE runs on the server's default database.
	server := *cfg
	server.DatabaseName = ""
	admin, err := newAdminDB(sqlplugin.DbKindUnknown, &server)
	if err != nil {
		return err
	}
	err = admin.CreateDatabase(cfg.DatabaseName)
	_ = admin.Close()
	if err != nil {
		return fmt.Errorf("create database: %w", err)
	}

	db, err := newAdminDB(kind, cfg)
	if err != nil {
		return err
	}
	conn := schemaConn{db: db, name: cfg.DatabaseName}
	defer conn.Close()
	logger := log.NewNoopLogger()
	tables, err := db.ListTables(cfg.DatabaseName)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if len(tables) == 0 {
		setup := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{SchemaName: schemaName, InitialVersion: db.ExpectedVersion()}, logger)
		if err := setup.Run(); err != nil {
			return fmt.Errorf("set up schema %s: %w", schemaName, err)
		}
		return nil
	}
	setup := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, logger)
	if err := setup.Run(); err != nil {
		return fmt.Errorf("set up schema version tables: %w", err)
	}
	update := schema.NewUpdateSchemaTask(conn, &schema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName}, logger)
	if err := update.Run(); err != nil {
		return fmt.Errorf("update schema %s: %w", schemaName, err)
	}
	return nil
}

func newAdminDB(kind sqlplugin.DbKind, cfg *config.SQL) (sqlplugin.AdminDB, error) {
	db, err := sql.NewSQLAdminDB(kind, cfg, resolver.NewNoopResolver(), log.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return db, nil
}

// schemaConn is the database Temporal's schema tasks work on: one database
// of an admin connection.
type schemaConn struct {
	db   sqlplugin.AdminDB
	name string
}

var _ schema.DB = schemaConn{}

func (c schemaConn) Exec(stmt string, args ...any) error { return c.db.Exec(stmt, args...) }
func (c schemaConn) CreateSchemaVersionTables() error    { return c.db.CreateSchemaVersionTables() }
func (c schemaConn) ReadSchemaVersion() (string, error)  { return c.db.ReadSchemaVersion(c.name) }
func (c schemaConn) Close()                              { _ = c.db.Close() }
func (c schemaConn) Type() string                        { return "sql" }
func (c schemaConn) UpdateSchemaVersion(v, minV string) error {
	return c.db.UpdateSchemaVersion(c.name, v, minV)
}

func (c schemaConn) WriteSchemaUpdateLog(oldV, newV, manifestMD5, desc string) error {
	return c.db.WriteSchemaUpdateLog(oldV, newV, manifestMD5, desc)
}

// DropAllTables is only for the setup task's overwrite option, which
// preparePostgres never sets: a database is never emptied.
func (c schemaConn) DropAllTables() error {
	return errors.New("devtemporal never drops Temporal's tables")
}
