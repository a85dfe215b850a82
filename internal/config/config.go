// Package config is Herald's one configuration struct: its defaults, its
// flags and environment variables, and its validation.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/policy"
)

// Config configures one Herald node.
type Config struct {
	// GRPCAddr is where the gRPC API listens.
	GRPCAddr string
	// HTTPAddr is where the HTTP edge (health, readiness) listens.
	HTTPAddr string
	// Store is the database: a PostgreSQL URL (postgres://...) or a SQLite
	// file path. Empty in dev mode means DataDir/herald.db.
	Store string
	// DataDir holds the dev mode's files (Herald's and Temporal's SQLite
	// databases).
	DataDir string

	// TemporalAddr is the Temporal frontend. In dev mode Herald runs an
	// embedded Temporal server there.
	TemporalAddr string
	// TemporalNamespace is the namespace delivery workflows run in.
	TemporalNamespace string
	// TaskQueue is the task queue of Herald's workers.
	TaskQueue string
	// UIAddr is where dev mode serves the Temporal Web UI; empty disables it.
	UIAddr string

	// AllowInsecureSinks accepts http:// sinks (dev mode's default).
	AllowInsecureSinks bool
	// Senders is how many first attempts are in flight at once.
	Senders int
	// ClaimBatch is the most deliveries claimed at once.
	ClaimBatch int
	// Lease is how long a claimed delivery stays claimed before another
	// node may take it.
	Lease time.Duration
	// CatalogReload is how often subscriptions are reloaded to see changes
	// made on other nodes.
	CatalogReload time.Duration
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
}

// Dev returns the defaults of `herald dev`: everything on loopback, with
// files under ./.herald.
func Dev() Config {
	c := Serve()
	c.DataDir = ".herald"
	c.TemporalAddr = "127.0.0.1:7233"
	c.UIAddr = "127.0.0.1:8233"
	c.AllowInsecureSinks = true
	return c
}

// Serve returns the defaults of `herald serve`.
func Serve() Config {
	return Config{
		GRPCAddr:          "127.0.0.1:50051",
		HTTPAddr:          "127.0.0.1:8080",
		TemporalAddr:      "127.0.0.1:7233",
		TemporalNamespace: "default",
		TaskQueue:         "herald-deliveries",
		Senders:           64,
		ClaimBatch:        256,
		Lease:             2 * time.Minute,
		CatalogReload:     time.Second,
		ShutdownTimeout:   30 * time.Second,
		LogLevel:          "info",
	}
}

// RegisterFlags defines a flag for every field, defaulting to c's values.
// dev adds the flags only dev mode has.
func (c *Config) RegisterFlags(fs *flag.FlagSet, dev bool) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC API listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP edge listen address (health, readiness)")
	fs.StringVar(&c.Store, "store", c.Store, "database: postgres://... URL or SQLite file path")
	fs.StringVar(&c.TemporalAddr, "temporal-addr", c.TemporalAddr, "Temporal frontend address")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", c.TemporalNamespace, "Temporal namespace")
	fs.StringVar(&c.TaskQueue, "task-queue", c.TaskQueue, "Temporal task queue of Herald's workers")
	fs.BoolVar(&c.AllowInsecureSinks, "allow-insecure-sinks", c.AllowInsecureSinks, "accept http:// sinks")
	fs.IntVar(&c.Senders, "senders", c.Senders, "first attempts in flight at once")
	fs.IntVar(&c.ClaimBatch, "claim-batch", c.ClaimBatch, "most deliveries claimed at once")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "how long a claimed delivery stays claimed")
	fs.DurationVar(&c.CatalogReload, "catalog-reload", c.CatalogReload, "how often subscriptions are reloaded")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "graceful shutdown limit")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	if dev {
		fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded databases")
		fs.StringVar(&c.UIAddr, "ui-addr", c.UIAddr, "Temporal Web UI listen address (empty disables it)")
	}
}

// Parse fills c from the environment (HERALD_<FLAG>, e.g.
// HERALD_GRPC_ADDR) and then from args, which take precedence.
func (c *Config) Parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "HERALD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// Finish applies derived defaults (the dev store path) and validates.
func (c *Config) Finish() error {
	if c.Store == "" && c.DataDir != "" {
		c.Store = filepath.Join(c.DataDir, "herald.db")
	}
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc-addr is required"))
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("http-addr is required"))
	}
	if c.Store == "" {
		errs = append(errs, errors.New("store is required (a postgres:// URL or a SQLite file path)"))
	}
	if c.TemporalAddr == "" {
		errs = append(errs, errors.New("temporal-addr is required"))
	}
	if c.TemporalNamespace == "" || c.TaskQueue == "" {
		errs = append(errs, errors.New("temporal-namespace and task-queue are required"))
	}
	if c.Senders <= 0 || c.ClaimBatch <= 0 {
		errs = append(errs, errors.New("senders and claim-batch must be positive"))
	}
	if c.Lease < policy.RequestTimeout+5*time.Second {
		// A lease shorter than a request's timeout would let a second node
		// send a delivery that is still in flight.
		errs = append(errs, fmt.Errorf("lease must be at least %s (the request timeout and a margin)", policy.RequestTimeout+5*time.Second))
	}
	if c.CatalogReload <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("catalog-reload and shutdown-timeout must be positive"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// IsPostgres reports whether Store names a PostgreSQL database.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.Store, "postgres://") || strings.HasPrefix(c.Store, "postgresql://")
}
