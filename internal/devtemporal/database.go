package devtemporal

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"go.temporal.io/server/common/config"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, also used by the server
)

// DatabaseFile is the name of the SQLite file in Config.DataDir.
const DatabaseFile = "temporal.db"

// prepareSQLite returns the SQL store configuration for dataDir (empty: in
// memory), creating the schema on a new file and the namespaces if missing.
// The one file holds both the default and the visibility store.
func prepareSQLite(dataDir string, namespaces []string) (*config.SQL, error) {
	c := &config.SQL{
		PluginName: sqliteplugin.PluginName,
		// SQLite has one writer; more connections measured slower here.
		MaxConns:     1,
		MaxIdleConns: 1,
	}
	if dataDir == "" {
		// The plugin creates the schema when it opens an in-memory database,
		// and keeps that connection (and so the database) for the life of
		// the process.
		c.DatabaseName = newDatabaseName()
		c.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
	} else {
		dir, err := filepath.Abs(dataDir)
		if err != nil {
			return nil, fmt.Errorf("temporal data dir %q: %w", dataDir, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("temporal data dir: %w", err)
		}
		c.DatabaseName = filepath.Join(dir, DatabaseFile)
		// Keys other than the SQLite URI parameters become pragmas.
		c.ConnectAttributes = map[string]string{
			"mode":         "rwc",
			"journal_mode": "wal",
			"synchronous":  "normal",
			"busy_timeout": "10000",
		}
		hasSchema, err := schemaExists(c.DatabaseName)
		if err != nil {
			return nil, err
		}
		if !hasSchema {
			if err := sqliteschema.SetupSchema(c); err != nil {
				return nil, fmt.Errorf("temporal database %s: set up schema: %w", c.DatabaseName, err)
			}
		}
	}

	if err := createNamespaces(c, namespaces); err != nil {
		return nil, fmt.Errorf("temporal database %s: %w", c.DatabaseName, err)
	}
	return c, nil
}

// createNamespaces creates the namespaces missing from the database c
// configures. The server's schema/sqlite package does it on any SQL plugin
// (it writes through the plugin's generic sqlplugin.DB), so PostgreSQL
// databases use it too.
func createNamespaces(c *config.SQL, namespaces []string) error {
	configs := make([]*sqliteschema.NamespaceConfig, 0, len(namespaces))
	for _, ns := range namespaces {
		nc, err := sqliteschema.NewNamespaceConfig(clusterName, ns, false, nil)
		if err != nil {
			return fmt.Errorf("temporal namespace %q: %w", ns, err)
		}
		configs = append(configs, nc)
	}
	return sqliteschema.CreateNamespaces(c, configs...)
}

// schemaExists reports whether the SQLite file at path holds the Temporal
// schema. A missing or empty file has none; a file with only part of it is an
// error, because setting it up again would fail half way.
func schemaExists(path string) (bool, error) {
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return false, nil
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return false, fmt.Errorf("temporal database %s: %w", path, err)
	}
	defer func() { _ = db.Close() }()

	// The first table of the main schema and the last of the visibility schema.
	var found int
	err = db.QueryRow(`SELECT count(*) FROM sqlite_master
		WHERE type = 'table' AND name IN ('namespaces', 'executions_visibility')`).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("temporal database %s: read schema: %w", path, err)
	}
	switch found {
	case 0:
		return false, nil
	case 2:
		return true, nil
	default:
		return false, fmt.Errorf("temporal database %s has an incomplete schema; remove it to start afresh", path)
	}
}

// newDatabaseName returns a unique name for an in-memory database.
func newDatabaseName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "devtemporal-" + hex.EncodeToString(b)
}
