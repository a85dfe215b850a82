package devtemporal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	"go.temporal.io/server/tools/common/schema"
)

// postgresServer is the local test server (trust authentication);
// HERALD_TEST_POSTGRES_DSN overrides it.
func postgresServer() string {
	if dsn := os.Getenv("HERALD_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/postgres"
}

// NewTestPostgresDatabase returns a URL for Config.PostgresURL naming a
// database that does not exist yet on the test server; it and its
// visibility database are dropped when the test ends. Without a server the
// test is skipped, or fails when CI is "true". It is in a _test.go file of
// this package, so that the tests of package devtemporal_test share it.
func NewTestPostgresDatabase(t testing.TB) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), postgresServer())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s: %v", postgresServer(), err)
		}
		t.Skipf("PostgreSQL at %s is unreachable: %v", postgresServer(), err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "devtemporal_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, db := range []string{name, name + VisibilitySuffix} {
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
				t.Errorf("drop database %s: %v", db, err)
			}
		}
		_ = conn.Close(ctx)
	})
	u, err := url.Parse(postgresServer())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestMigratePostgres_UpdatesAnOldSchemaToWhatANewDatabaseGets: a new
// database gets the current schema in one go; one at the first version is
// brought up to date by the versioned updates; both end at the version the
// server expects, the updated one with every table of the new one, and
// migrating again changes nothing. (The updates leave tables that the
// current schema no longer has, such as cluster_metadata.)
func TestMigratePostgres_UpdatesAnOldSchemaToWhatANewDatabaseGets(t *testing.T) {
	fresh, err := parsePostgresURL(NewTestPostgresDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	old, err := parsePostgresURL(NewTestPostgresDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, store := range []struct {
		name   string
		suffix string
		kind   sqlplugin.DbKind
		schema string
	}{
		{"default", "", sqlplugin.DbKindMain, postgresSchema},
		{"visibility", VisibilitySuffix, sqlplugin.DbKindVisibility, postgresVisibilitySchema},
	} {
		t.Run(store.name, func(t *testing.T) {
			freshCfg, oldCfg := *fresh, *old
			freshCfg.DatabaseName += store.suffix
			oldCfg.DatabaseName += store.suffix

			migrateTo(t, &oldCfg, store.schema, "1.0")
			if _, got := schemaOf(t, &oldCfg, store.kind); got != "1.0" {
				t.Fatalf("old database at version %s, want 1.0", got)
			}
			for i := range 2 {
				for _, cfg := range []*config.SQL{&freshCfg, &oldCfg} {
					if err := migratePostgres(cfg, store.kind, store.schema); err != nil {
						t.Fatalf("migration %d of %s: %v", i+1, cfg.DatabaseName, err)
					}
				}
			}
			freshTables, freshVersion := schemaOf(t, &freshCfg, store.kind)
			oldTables, oldVersion := schemaOf(t, &oldCfg, store.kind)
			want := expectedVersion(t, &freshCfg, store.kind)
			if freshVersion != want || oldVersion != want {
				t.Errorf("versions: new database %s, updated one %s; want %s", freshVersion, oldVersion, want)
			}
			for _, table := range freshTables {
				if !slices.Contains(oldTables, table) {
					t.Errorf("the updated database lacks table %s", table)
				}
			}
			t.Logf("%d tables at version %s", len(freshTables), want)
		})
	}
}

// migrateTo creates the database cfg names and sets up schemaName up to
// version, as Temporal's SQL tool would.
func migrateTo(t *testing.T, cfg *config.SQL, schemaName, version string) {
	t.Helper()
	server := *cfg
	server.DatabaseName = ""
	admin, err := newAdminDB(sqlplugin.DbKindUnknown, &server)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	if err := admin.CreateDatabase(cfg.DatabaseName); err != nil {
		t.Fatal(err)
	}
	db, err := newAdminDB(sqlplugin.DbKindUnknown, cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := schemaConn{db: db, name: cfg.DatabaseName}
	defer conn.Close()
	if err := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, log.NewNoopLogger()).Run(); err != nil {
		t.Fatal(err)
	}
	update := &schema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName, TargetVersion: version}
	if err := schema.NewUpdateSchemaTask(conn, update, log.NewNoopLogger()).Run(); err != nil {
		t.Fatal(err)
	}
}

// schemaOf returns the tables of the database cfg names and its schema
// version.
func schemaOf(t *testing.T, cfg *config.SQL, kind sqlplugin.DbKind) ([]string, string) {
	t.Helper()
	db, err := newAdminDB(kind, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	tables, err := db.ListTables(cfg.DatabaseName)
	if err != nil {
		t.Fatal(err)
	}
	version, err := db.ReadSchemaVersion(cfg.DatabaseName)
	if err != nil {
		t.Fatal(err)
	}
	return tables, version
}

// expectedVersion is the schema version the server requires of a store of kind.
func expectedVersion(t *testing.T, cfg *config.SQL, kind sqlplugin.DbKind) string {
	t.Helper()
	db, err := newAdminDB(kind, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	return db.ExpectedVersion()
}
