// Package config is Herald's one configuration struct: its defaults, its
// flags and environment variables, and its validation.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
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
	// HTTPAddr is where the HTTP edge (health, readiness, CloudEvents
	// ingest) listens.
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
	// EmbeddedTemporal is set when the Temporal server runs in this process
	// (dev mode): hand-offs to it are then paced while first attempts keep
	// the CPU busy (dispatch.Config.PaceHandoffs).
	EmbeddedTemporal bool
	// TemporalNamespace is the namespace delivery workflows run in.
	TemporalNamespace string
	// TaskQueue is the task queue of Herald's workers.
	TaskQueue string
	// UIAddr is where dev mode serves the Temporal Web UI; empty disables it.
	UIAddr string

	// AllowInsecureSinks accepts http:// sinks (dev mode's default).
	AllowInsecureSinks bool
	// AllowPrivateSinks lets sinks be at loopback, private, link-local and
	// other non-public addresses (dev mode's default: sinks on this
	// machine). Otherwise such sinks are refused at create, and every dial
	// is checked (package egress). SinkAllowCIDRs are ranges allowed
	// anyway (e.g. an internal network of sinks).
	AllowPrivateSinks bool
	SinkAllowCIDRs    []string
	// Origin is Herald's name towards sinks: the WebHook-Request-Origin of
	// validation handshakes and deliveries. Default: the host name.
	Origin string
	// PublicURL is the base URL at which sinks reach the HTTP edge, for
	// validation callbacks. Default: http://<http-addr>.
	PublicURL string
	// MaxInFlight is the most webhook requests in flight on the node, first
	// attempts and retries together.
	MaxInFlight int
	// Queue is the most claimed deliveries waiting for their request to
	// start.
	Queue int
	// OriginConcurrency is the in-flight limit each sink origin starts
	// with; it adapts to how the origin answers, up to
	// MaxOriginConcurrency.
	OriginConcurrency    int
	MaxOriginConcurrency int
	// BreakerThreshold is how many timeouts or connection failures in a
	// row open an origin's circuit breaker, which stays open for
	// BreakerOpen at first, doubling up to BreakerMaxOpen.
	BreakerThreshold int
	BreakerOpen      time.Duration
	BreakerMaxOpen   time.Duration
	// ClaimBatch is the most deliveries claimed at once.
	ClaimBatch int
	// Lease is how long a claimed delivery stays claimed before another
	// node may take it.
	Lease time.Duration
	// MaxConnections is the most connections each listener (gRPC, HTTP)
	// holds at once; more wait to be accepted.
	MaxConnections int
	// CatalogReload is how often subscriptions are reloaded to see changes
	// made on other nodes.
	CatalogReload time.Duration
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string

	// APIKeys are the bearer tokens accepted by the HTTP ingest endpoint
	// (POST /v1/events). With none, ingest is disabled unless
	// IngestWithoutAuth is set.
	APIKeys []string
	// IngestWithoutAuth accepts unauthenticated ingest when APIKeys is
	// empty (dev mode's default; never for production).
	IngestWithoutAuth bool
	// AllowedOrigins are the sender DNS names whose CloudEvents webhook
	// validation handshake is granted, matched exactly (case-insensitive).
	AllowedOrigins []string
	// IngestRate is the WebHook-Allowed-Rate granted in the handshake, in
	// requests per minute; 0 grants "*" (no limit).
	IngestRate int
	// AutoGrantCallbacks grants a handshake that asks for a callback
	// (WebHook-Request-Callback) by calling the callback URL back.
	AutoGrantCallbacks bool
}

// Defaults every component shares. Each component's own zero-value
// fallback takes these same values (TestDefaults_ComponentsAgree).
const (
	DefaultTaskQueue            = "herald-deliveries"
	DefaultMaxInFlight          = 4096
	DefaultQueue                = 4096
	DefaultOriginConcurrency    = 4
	DefaultMaxOriginConcurrency = 1024
	DefaultBreakerThreshold     = 3
	DefaultBreakerOpen          = time.Second
	DefaultBreakerMaxOpen       = 10 * time.Second
	DefaultClaimBatch           = 2048
	DefaultLease                = 2 * time.Minute
	DefaultCatalogReload        = time.Second
	DefaultMaxConnections       = 4096
	DefaultShutdownTimeout      = 30 * time.Second
)

// Dev returns the defaults of `herald dev`: everything on loopback, with
// files under ./.herald.
func Dev() Config {
	c := Serve()
	c.DataDir = ".herald"
	c.TemporalAddr = "127.0.0.1:7233"
	c.UIAddr = "127.0.0.1:8233"
	c.AllowInsecureSinks = true
	c.AllowPrivateSinks = true
	c.IngestWithoutAuth = true
	return c
}

// Serve returns the defaults of `herald serve`.
func Serve() Config {
	origin, err := os.Hostname()
	if err != nil || origin == "" {
		origin = "localhost"
	}
	return Config{
		Origin:               strings.ToLower(origin),
		GRPCAddr:             "127.0.0.1:50051",
		HTTPAddr:             "127.0.0.1:8080",
		TemporalAddr:         "127.0.0.1:7233",
		TemporalNamespace:    "default",
		TaskQueue:            DefaultTaskQueue,
		MaxInFlight:          DefaultMaxInFlight,
		Queue:                DefaultQueue,
		OriginConcurrency:    DefaultOriginConcurrency,
		MaxOriginConcurrency: DefaultMaxOriginConcurrency,
		BreakerThreshold:     DefaultBreakerThreshold,
		BreakerOpen:          DefaultBreakerOpen,
		BreakerMaxOpen:       DefaultBreakerMaxOpen,
		ClaimBatch:           DefaultClaimBatch,
		Lease:                DefaultLease,
		CatalogReload:        DefaultCatalogReload,
		MaxConnections:       DefaultMaxConnections,
		ShutdownTimeout:      DefaultShutdownTimeout,
		LogLevel:             "info",
	}
}

// RegisterFlags defines a flag for every field, defaulting to c's values.
// dev adds the flags only dev mode has.
func (c *Config) RegisterFlags(fs *flag.FlagSet, dev bool) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC API listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP edge listen address (health, readiness, CloudEvents ingest)")
	fs.StringVar(&c.Store, "store", c.Store, "database: postgres://... URL or SQLite file path")
	fs.StringVar(&c.TemporalAddr, "temporal-addr", c.TemporalAddr, "Temporal frontend address")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", c.TemporalNamespace, "Temporal namespace")
	fs.StringVar(&c.TaskQueue, "task-queue", c.TaskQueue, "Temporal task queue of Herald's workers")
	fs.BoolVar(&c.AllowInsecureSinks, "allow-insecure-sinks", c.AllowInsecureSinks, "accept http:// sinks")
	fs.BoolVar(&c.AllowPrivateSinks, "allow-private-sinks", c.AllowPrivateSinks, "let sinks be at loopback, private, link-local and other non-public addresses")
	fs.Var((*listValue)(&c.SinkAllowCIDRs), "sink-allow-cidrs", "comma-separated address ranges sinks may be at even when private sinks are not allowed")
	fs.StringVar(&c.Origin, "origin", c.Origin, "Herald's DNS name in webhook validation handshakes (WebHook-Request-Origin)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base URL at which sinks reach the HTTP edge (default http://<http-addr>)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "webhook requests in flight on the node at most, first attempts and retries")
	fs.IntVar(&c.Queue, "queue", c.Queue, "claimed deliveries waiting for their request to start, at most")
	fs.IntVar(&c.OriginConcurrency, "origin-concurrency", c.OriginConcurrency, "in-flight limit a sink origin starts with (it adapts)")
	fs.IntVar(&c.MaxOriginConcurrency, "max-origin-concurrency", c.MaxOriginConcurrency, "in-flight limit a sink origin may grow to")
	fs.IntVar(&c.BreakerThreshold, "breaker-threshold", c.BreakerThreshold, "timeouts or connection failures in a row that open an origin's circuit breaker")
	fs.DurationVar(&c.BreakerOpen, "breaker-open", c.BreakerOpen, "how long an origin's breaker first stays open")
	fs.DurationVar(&c.BreakerMaxOpen, "breaker-max-open", c.BreakerMaxOpen, "the longest an origin's breaker stays open before a probe")
	fs.IntVar(&c.ClaimBatch, "claim-batch", c.ClaimBatch, "most deliveries claimed at once")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "how long a claimed delivery stays claimed")
	fs.DurationVar(&c.CatalogReload, "catalog-reload", c.CatalogReload, "how often subscriptions are reloaded")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "connections each listener (gRPC, HTTP) holds at most; more wait to be accepted")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "graceful shutdown limit")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.Var((*listValue)(&c.APIKeys), "api-keys", "comma-separated bearer tokens accepted by POST /v1/events (prefer the HERALD_API_KEYS environment variable)")
	fs.BoolVar(&c.IngestWithoutAuth, "ingest-without-auth", c.IngestWithoutAuth, "accept unauthenticated POST /v1/events when no api-keys are set (development only)")
	fs.Var((*listValue)(&c.AllowedOrigins), "allowed-origins", "comma-separated sender DNS names granted in the webhook validation handshake")
	fs.IntVar(&c.IngestRate, "ingest-rate", c.IngestRate, "requests per minute granted in the webhook validation handshake (0: no limit)")
	fs.BoolVar(&c.AutoGrantCallbacks, "auto-grant-callbacks", c.AutoGrantCallbacks, "grant handshakes that ask for a callback by calling the callback URL")
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
	if c.MaxInFlight <= 0 || c.Queue <= 0 || c.ClaimBatch <= 0 || c.MaxConnections <= 0 {
		errs = append(errs, errors.New("max-in-flight, queue, claim-batch and max-connections must be positive"))
	}
	if c.OriginConcurrency <= 0 || c.MaxOriginConcurrency < c.OriginConcurrency {
		errs = append(errs, errors.New("origin-concurrency must be positive and at most max-origin-concurrency"))
	}
	if c.BreakerThreshold <= 0 || c.BreakerOpen <= 0 || c.BreakerMaxOpen < c.BreakerOpen {
		errs = append(errs, errors.New("breaker-threshold and breaker-open must be positive, breaker-max-open at least breaker-open"))
	}
	if c.Lease < policy.RequestTimeout+5*time.Second {
		// A lease shorter than a request's timeout would let a second node
		// send a delivery that is still in flight.
		errs = append(errs, fmt.Errorf("lease must be at least %s (the request timeout and a margin)", policy.RequestTimeout+5*time.Second))
	}
	if c.CatalogReload <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("catalog-reload and shutdown-timeout must be positive"))
	}
	if !isDNSName(c.Origin) {
		errs = append(errs, fmt.Errorf("origin %q is not a DNS name", c.Origin))
	}
	if c.IngestRate < 0 {
		errs = append(errs, errors.New("ingest-rate must not be negative"))
	}
	if _, err := c.SinkAllowPrefixes(); err != nil {
		errs = append(errs, err)
	}
	for i, o := range c.AllowedOrigins {
		if !isDNSName(o) {
			errs = append(errs, fmt.Errorf("allowed-origins: %q is not a DNS name", o))
		}
		c.AllowedOrigins[i] = strings.ToLower(o)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// SinkAllowPrefixes parses SinkAllowCIDRs.
func (c *Config) SinkAllowPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.SinkAllowCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("sink-allow-cidrs: %q is not an address range (CIDR): %v", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// IsPostgres reports whether Store names a PostgreSQL database.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.Store, "postgres://") || strings.HasPrefix(c.Store, "postgresql://")
}

// listValue is a comma-separated list flag; empty items are dropped and
// each Set replaces the list.
type listValue []string

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listValue) Set(s string) error {
	*l = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// isDNSName reports whether s is a DNS name: dot-separated labels of
// letters, digits and hyphens, each 1 to 63 characters and not starting
// or ending with a hyphen, 253 characters at most.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
