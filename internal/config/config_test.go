package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, c *Config, args ...string) error {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs, true)
	return c.Parse(fs, args)
}

func TestParse_FlagsOverEnvironmentOverDefaults(t *testing.T) {
	t.Setenv("HERALD_GRPC_ADDR", "127.0.0.1:6000")
	t.Setenv("HERALD_HTTP_ADDR", "127.0.0.1:6001")
	t.Setenv("HERALD_MAX_IN_FLIGHT", "99")
	t.Setenv("HERALD_API_KEYS", "a, b,,c")
	c := Dev()
	if err := parse(t, &c, "--http-addr", "127.0.0.1:7001", "--breaker-open", "3s"); err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:6000" {
		t.Errorf("grpc-addr = %q, want the environment's", c.GRPCAddr)
	}
	if c.HTTPAddr != "127.0.0.1:7001" {
		t.Errorf("http-addr = %q, want the flag's over the environment's", c.HTTPAddr)
	}
	if c.MaxInFlight != 99 || c.BreakerOpen != 3*time.Second {
		t.Errorf("max-in-flight %d, breaker-open %s", c.MaxInFlight, c.BreakerOpen)
	}
	if strings.Join(c.APIKeys, "|") != "a|b|c" {
		t.Errorf("api-keys = %q", c.APIKeys)
	}
	// Untouched fields keep the defaults.
	if c.Queue != DefaultQueue || c.TaskQueue != DefaultTaskQueue || c.Lease != DefaultLease {
		t.Errorf("defaults changed: queue %d, task queue %q, lease %s", c.Queue, c.TaskQueue, c.Lease)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Store != ".herald/herald.db" {
		t.Errorf("dev store = %q, want under the data dir", c.Store)
	}
}

func TestParse_BadEnvironmentValueNamesTheVariable(t *testing.T) {
	t.Setenv("HERALD_LEASE", "soon")
	c := Serve()
	err := parse(t, &c)
	if err == nil || !strings.Contains(err.Error(), "HERALD_LEASE") {
		t.Fatalf("err = %v, want it to name HERALD_LEASE", err)
	}
}

func TestFinish_RefusesInvalidSettings(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no store", func(c *Config) { c.Store, c.DataDir = "", "" }, "store is required"},
		{"short lease", func(c *Config) { c.Lease = 10 * time.Second }, "lease must be at least"},
		{"no budget", func(c *Config) { c.MaxInFlight = 0 }, "max-in-flight"},
		{"origin limit above its maximum", func(c *Config) { c.OriginConcurrency = 2000 }, "origin-concurrency"},
		{"breaker open longer than its maximum", func(c *Config) { c.BreakerOpen = time.Minute }, "breaker-max-open"},
		{"origin not a DNS name", func(c *Config) { c.Origin = "not a name" }, "not a DNS name"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log-level"},
		{"negative ingest rate", func(c *Config) { c.IngestRate = -1 }, "ingest-rate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Serve()
			c.Store = "herald.db"
			tt.change(&c)
			err := c.Finish()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Finish = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	c := Serve()
	c.Store = "herald.db"
	if err := c.Finish(); err != nil {
		t.Errorf("the serve defaults with a store: %v", err)
	}
}

func TestServe_UsesTheDefaults(t *testing.T) {
	c := Serve()
	if c.MaxInFlight != DefaultMaxInFlight || c.Queue != DefaultQueue || c.OriginConcurrency != DefaultOriginConcurrency ||
		c.MaxOriginConcurrency != DefaultMaxOriginConcurrency || c.BreakerThreshold != DefaultBreakerThreshold ||
		c.BreakerOpen != DefaultBreakerOpen || c.BreakerMaxOpen != DefaultBreakerMaxOpen || c.ClaimBatch != DefaultClaimBatch ||
		c.Lease != DefaultLease || c.CatalogReload != DefaultCatalogReload || c.ShutdownTimeout != DefaultShutdownTimeout ||
		c.TaskQueue != DefaultTaskQueue || c.MaxConnections != DefaultMaxConnections {
		t.Errorf("Serve() = %+v does not take the package defaults", c)
	}
	if d := Dev(); !d.AllowInsecureSinks || !d.IngestWithoutAuth || d.DataDir == "" {
		t.Errorf("Dev() = %+v: want insecure sinks, ingest without auth and a data dir", d)
	}
}
