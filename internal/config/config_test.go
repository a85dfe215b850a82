package config

import (
	"flag"
	"math"
	"os"
	"path/filepath"
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
	t.Setenv("HERALD_ALLOW_CLIENT_CIDRS", "10.0.0.0/8, 192.168.1.0/24,,::1/128")
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
	if strings.Join(c.AllowClientCIDRs, "|") != "10.0.0.0/8|192.168.1.0/24|::1/128" {
		t.Errorf("allow-client-cidrs = %q", c.AllowClientCIDRs)
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

func TestParse_NodeIDFromTheEnvironment(t *testing.T) {
	t.Setenv("HERALD_NODE_ID", "herald-2")
	c := Serve()
	if err := parse(t, &c); err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "herald-2" {
		t.Errorf("node-id = %q, want HERALD_NODE_ID's", c.NodeID)
	}
}

func TestServe_NodeIDDefaultsToTheHostName(t *testing.T) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		t.Skip("no host name")
	}
	if c := Serve(); c.NodeID != h {
		t.Errorf("node-id = %q, want the host name %q", c.NodeID, h)
	}
}

// TestFinish_AShortLeaseTakesTheDefaultClaimLease: a lease shorter than
// the default claim lease is valid alone; the claim lease is then the
// lease (dispatch takes the shorter).
func TestFinish_AShortLeaseTakesTheDefaultClaimLease(t *testing.T) {
	c := servable()
	c.Lease = 20 * time.Second
	if err := c.Finish(); err != nil {
		t.Fatalf("Finish with lease 20s: %v", err)
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
		{"claim lease shorter than a request", func(c *Config) { c.LeaseRenew = 10 * time.Second }, "lease-renew must be at least"},
		{"no node ID", func(c *Config) { c.NodeID = "" }, "node-id"},
		{"node ID with a space", func(c *Config) { c.NodeID = "node 1" }, "node-id"},
		{"no budget", func(c *Config) { c.MaxInFlight = 0 }, "max-in-flight"},
		{"origin limit above its maximum", func(c *Config) { c.OriginConcurrency = 2000 }, "origin-concurrency"},
		{"breaker open longer than its maximum", func(c *Config) { c.BreakerOpen = time.Minute }, "breaker-max-open"},
		{"origin not a DNS name", func(c *Config) { c.Origin = "not a name" }, "not a DNS name"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log-level"},
		{"negative ingest rate", func(c *Config) { c.IngestRate = -1 }, "ingest-rate"},
		{"serve without any authentication", func(c *Config) { c.AdminKey = "" }, "herald serve authenticates its callers"},
		{"serve without an encryption key", func(c *Config) { c.EncryptionKeys = nil }, "encrypts secrets at rest"},
		{"tls cert without its key", func(c *Config) { c.TLSCert = "cert.pem" }, "tls-cert and tls-key"},
		{"client CA without TLS", func(c *Config) { c.TLSClientCA = "ca.pem" }, "tls-client-ca needs tls-cert"},
		{"bad client CIDR", func(c *Config) { c.AllowClientCIDRs = []string{"10.0.0.0/33"} }, "allow-client-cidrs"},
		{"NaN publish rate", func(c *Config) { c.PublishRate = math.NaN() }, "publish-rate"},
		{"shared sink host not a name", func(c *Config) { c.SharedSinkHosts = []string{"inbox.example/path"} }, "shared-sink-hosts"},
		{"shared sink host wildcard inside a name", func(c *Config) { c.SharedSinkHosts = []string{"a.*.example"} }, "shared-sink-hosts"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := servable()
			tt.change(&c)
			err := c.Finish()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Finish = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	c := servable()
	if err := c.Finish(); err != nil {
		t.Errorf("the serve defaults with a store, an admin key and an encryption key: %v", err)
	}
	c = servable()
	c.AdminKey, c.TLSCert, c.TLSKey, c.TLSClientCA = "", "cert.pem", "key.pem", "ca.pem"
	if err := c.Finish(); err != nil || !c.Authenticates() {
		t.Errorf("serve with client certificates instead of an admin key: %v", err)
	}
	c = servable()
	c.SharedSinkHosts = []string{"Inbox.Example", "*.Tunnel.example"}
	if err := c.Finish(); err != nil || strings.Join(c.SharedSinkHosts, ",") != "inbox.example,*.tunnel.example" {
		t.Errorf("shared sink hosts: %v, %q; want them accepted, in lower case", err, c.SharedSinkHosts)
	}
	c = servable()
	c.AdminKey, c.InsecureNoAuth = "", true
	if err := c.Finish(); err != nil || c.Authenticates() {
		t.Errorf("serve with --insecure-no-auth: %v, authenticates %v", err, c.Authenticates())
	}
}

// servable is the serve defaults with what serve needs.
func servable() Config {
	c := Serve()
	c.Store, c.AdminKey, c.EncryptionKeys = "herald.db", "hk_admin", []string{"k1:key"}
	return c
}

func TestDev_AuthenticatesOnlyWithAnAdminKey(t *testing.T) {
	d := Dev()
	if err := d.Finish(); err != nil || d.Authenticates() {
		t.Errorf("dev: %v, authenticates %v; want open", err, d.Authenticates())
	}
	d.AdminKey = "hk_admin"
	if !d.Authenticates() {
		t.Error("dev with an admin key does not authenticate")
	}
}

func TestServe_UsesTheDefaults(t *testing.T) {
	c := Serve()
	if c.MaxInFlight != DefaultMaxInFlight || c.Queue != DefaultQueue || c.OriginConcurrency != DefaultOriginConcurrency ||
		c.MaxOriginConcurrency != DefaultMaxOriginConcurrency || c.BreakerThreshold != DefaultBreakerThreshold ||
		c.BreakerOpen != DefaultBreakerOpen || c.BreakerMaxOpen != DefaultBreakerMaxOpen || c.ClaimBatch != DefaultClaimBatch ||
		c.Lease != DefaultLease || c.CatalogReload != DefaultCatalogReload || c.ShutdownTimeout != DefaultShutdownTimeout ||
		c.TaskQueue != DefaultTaskQueue || c.MaxConnections != DefaultMaxConnections || c.LeaseRenew != DefaultLeaseRenew {
		t.Errorf("Serve() = %+v does not take the package defaults", c)
	}
	if d := Dev(); !d.AllowInsecureSinks || !d.AllowPrivateSinks || !d.Dev || d.DataDir == "" {
		t.Errorf("Dev() = %+v: want insecure and private sinks and a data dir", d)
	}
}

func TestParse_FileUnderEnvironmentUnderFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte(`
grpc-addr: 127.0.0.1:6000
http-addr: 127.0.0.1:6001
max-in-flight: 77
allow-client-cidrs: [10.0.0.0/8, 192.168.0.0/16]
lease: 3m
node-id: herald-0
admin-key: hk_from_the_file
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_HTTP_ADDR", "127.0.0.1:7001")
	c := Serve()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs, false)
	if err := c.Parse(fs, []string{"--config", path, "--max-in-flight", "88"}); err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:6000" || c.Lease != 3*time.Minute || strings.Join(c.AllowClientCIDRs, ",") != "10.0.0.0/8,192.168.0.0/16" {
		t.Errorf("from the file: grpc-addr %q, lease %s, cidrs %q", c.GRPCAddr, c.Lease, c.AllowClientCIDRs)
	}
	if c.HTTPAddr != "127.0.0.1:7001" {
		t.Errorf("http-addr %q: the environment must win over the file", c.HTTPAddr)
	}
	if c.NodeID != "herald-0" {
		t.Errorf("node-id %q, want the file's", c.NodeID)
	}
	if c.MaxInFlight != 88 {
		t.Errorf("max-in-flight %d: the flag must win over the file", c.MaxInFlight)
	}
	out := Effective(fs)
	if strings.Contains(out, "hk_from_the_file") || !strings.Contains(out, `admin-key: "(set, not shown)"`) || !strings.Contains(out, `max-in-flight: "88"`) {
		t.Errorf("Effective:\n%s", out)
	}
}

func TestParse_AFileKeyThatIsNoSettingIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte("grpc-adr: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Serve()
	if err := parse(t, &c, "--config="+path); err == nil || !strings.Contains(err.Error(), `"grpc-adr" is not a setting`) {
		t.Errorf("a misspelt key: %v", err)
	}
}

func TestEffective_MasksTheStorePassword(t *testing.T) {
	c := Serve()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs, false)
	if err := c.Parse(fs, []string{"--store", "postgres://herald:s3cret@db:5432/herald"}); err != nil {
		t.Fatal(err)
	}
	if out := Effective(fs); strings.Contains(out, "s3cret") || !strings.Contains(out, "herald:xxxxx@db") {
		t.Errorf("Effective shows the store as:\n%s", out)
	}
}
