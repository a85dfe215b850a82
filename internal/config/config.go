// Package config is Herald's one configuration struct: its defaults, its
// flags and environment variables, and its validation.
package config

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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
	// Migrate applies the store's pending migrations at start. Without it
	// a node on PostgreSQL refuses to start on a schema that lacks
	// migrations (`herald migrate up` applies them); a SQLite store, which
	// one node owns, is always migrated. No node starts on a schema newer
	// than it knows.
	Migrate bool

	// TemporalAddr is the Temporal frontend. In dev mode Herald runs an
	// embedded Temporal server there.
	TemporalAddr string
	// EmbeddedTemporal is set when the Temporal server runs in this process
	// (dev mode): hand-offs to it are then paced while first attempts keep
	// the CPU busy (dispatch.Config.PaceHandoffs).
	EmbeddedTemporal bool
	// TemporalNamespace is the namespace delivery workflows run in.
	TemporalNamespace string
	// TemporalTLS connects to Temporal over TLS (implied by any of the
	// TemporalTLS* fields or TemporalAPIKey): TemporalTLSCA is a PEM
	// bundle of authorities to trust instead of the system's,
	// TemporalTLSCert and TemporalTLSKey a client certificate (mTLS),
	// TemporalTLSServerName the name to verify instead of the address's
	// host.
	TemporalTLS           bool
	TemporalTLSCA         string
	TemporalTLSCert       string
	TemporalTLSKey        string
	TemporalTLSServerName string
	// TemporalAPIKey authenticates to Temporal Cloud (or any cluster that
	// takes API keys); prefer HERALD_TEMPORAL_API_KEY.
	TemporalAPIKey string
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
	// SharedSinkHosts are sink hosts whose paths belong to unrelated
	// receivers (a shared webhook inbox, a tunnelling service): a name,
	// or *.domain for every name under it. A subscription whose sink is
	// on one of them is taken out of its origin's sharing, as with
	// subscription_pause_only: its Retry-After pauses and its granted
	// rate hold for it alone.
	SharedSinkHosts []string
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
	// Lease is how long a node may keep a claimed delivery before its
	// request starts: one that has not started Lease less the request
	// timeout and a margin after its claim is put back for any node.
	Lease time.Duration
	// LeaseRenew is how long a claim lasts in the store unless renewed
	// (at most Lease; a longer one is Lease). The node renews the claims
	// it still holds every tenth of it, so the deliveries of a node that
	// died are claimed by other nodes LeaseRenew after its last renewal
	// at most.
	LeaseRenew time.Duration
	// NodeID names this node in the claims it makes. A node started
	// again with the same ID puts back at once the deliveries it held
	// when it stopped. It must be stable across restarts and never
	// shared by two nodes running at once.
	NodeID string
	// MaxConnections is the most connections each listener (gRPC, HTTP)
	// holds at once; more wait to be accepted.
	MaxConnections int
	// CatalogReload is how often subscriptions are reloaded to see changes
	// made on other nodes.
	CatalogReload time.Duration
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// RetentionDelivered and RetentionDead are how long deliveries are
	// kept after they were delivered or dead-lettered (0: forever);
	// PruneInterval is how often a pruning pass starts.
	RetentionDelivered, RetentionDead time.Duration
	PruneInterval                     time.Duration
	// SuspendAfter is how long a subscription's sink may fail every
	// attempt before the subscription is suspended, unless the
	// subscription sets its own.
	SuspendAfter time.Duration
	// DrainDelay is how long a stopping node keeps serving while it tells
	// load balancers it is not ready (/readyz 503, gRPC health
	// NOT_SERVING), before it stops taking calls.
	DrainDelay time.Duration
	// Tracing sends OpenTelemetry traces (a Publish call's span, and each
	// attempt as its child) through OTLP, configured by the standard
	// OTEL_* variables; on when OTEL_EXPORTER_OTLP_ENDPOINT (or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.
	Tracing bool
	// LogLevel is debug, info, warn or error; LogFormat json (serve's
	// default, for log pipelines) or text (dev's).
	LogLevel  string
	LogFormat string

	// Dev is set for `herald dev`: without AdminKey it authenticates
	// nobody, and an encryption key is made in DataDir if none is given.
	Dev bool
	// AdminKey is an API key with the admin scope that is never stored
	// (HERALD_ADMIN_KEY). `herald serve` needs it, TLSClientCA or
	// InsecureNoAuth.
	AdminKey string
	// InsecureNoAuth runs `herald serve` authenticating nobody.
	InsecureNoAuth bool
	// MetricsOpen serves /metrics without an API key.
	MetricsOpen bool
	// PublishRate (events per second) and PublishBurst bound what each
	// stored API key publishes on this node unless the key says
	// otherwise; 0 is no bound.
	PublishRate  float64
	PublishBurst int
	// TLSCert and TLSKey serve the gRPC API and the HTTP edge over TLS;
	// the files are read again when they change. TLSClientCA requires
	// client certificates signed by it (mTLS); TLSClientAdmins are client
	// certificate subject common names that hold the admin scope.
	TLSCert, TLSKey string
	TLSClientCA     string
	TLSClientAdmins []string
	// AllowClientCIDRs, if set, are the only address ranges the gRPC API
	// and the HTTP edge accept connections from.
	AllowClientCIDRs []string
	// EncryptionKeys encrypt secrets at rest: "id:base64" of 32 bytes,
	// comma-separated, the first encrypting and every one decrypting
	// (HERALD_ENCRYPTION_KEY). `herald serve` needs one; `herald dev`
	// makes one in DataDir.
	EncryptionKeys []string
	// SinkCA is a PEM bundle of certificate authorities trusted for sinks
	// besides the system's.
	SinkCA string
	// Limits bound what one request or one tenant may carry.
	Limits policy.Limits
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
// fallback takes these same values (each component's
// TestDefaults_AreConfigs).
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
	// The dispatcher's hand-off to Temporal and its pace: workflows
	// started at once, failed first attempts waiting for them, how often
	// an idle dispatcher looks for deliveries, and how long a finished
	// attempt waits for others to record with it in one transaction.
	DefaultHandoffs        = 16
	DefaultHandoffQueue    = 4096
	DefaultPollInterval    = 200 * time.Millisecond
	DefaultRecordWait      = 10 * time.Millisecond
	DefaultLeaseRenew      = 30 * time.Second
	DefaultCatalogReload   = time.Second
	DefaultMaxConnections  = 4096
	DefaultShutdownTimeout = 30 * time.Second
	DefaultDrainDelay      = 5 * time.Second
	// Retention: how long delivered and dead-lettered deliveries are
	// kept, and the pace of pruning.
	DefaultRetentionDelivered = 7 * 24 * time.Hour
	DefaultRetentionDead      = 30 * 24 * time.Hour
	DefaultPruneInterval      = time.Minute
	DefaultPruneBatch         = 500
	// DefaultSuspendAfter is --suspend-after.
	DefaultSuspendAfter = 72 * time.Hour
	// Limits that hold across nodes: a node leases a rate limit's
	// tokens from the store in batches of about DefaultTokenLease's worth
	// of the rate, drops leased tokens it has not spent within
	// DefaultTokenSpend, and reads the sink origins' pauses and the live
	// nodes every DefaultClusterRefresh; a node counts as gone
	// DefaultNodeTTL after its last heartbeat. Every DefaultLimitsForget
	// each node deletes the buckets idle and the pauses ended for as long.
	DefaultTokenLease     = 250 * time.Millisecond
	DefaultTokenSpend     = 500 * time.Millisecond
	DefaultClusterRefresh = time.Second
	DefaultNodeTTL        = 5 * time.Second
	DefaultLimitsForget   = time.Hour
	// DefaultCommitBatch is the most events one group commit stores, and
	// DefaultGatherWait how long a commit waits for calls on their way.
	DefaultCommitBatch = 1000
	DefaultGatherWait  = time.Millisecond
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
	c.DrainDelay = 0 // nothing balances load to a dev node
	c.LogFormat = "text"
	c.Migrate = true
	c.Dev = true
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
		LeaseRenew:           DefaultLeaseRenew,
		NodeID:               hostname(),
		CatalogReload:        DefaultCatalogReload,
		MaxConnections:       DefaultMaxConnections,
		ShutdownTimeout:      DefaultShutdownTimeout,
		DrainDelay:           DefaultDrainDelay,
		RetentionDelivered:   DefaultRetentionDelivered,
		RetentionDead:        DefaultRetentionDead,
		PruneInterval:        DefaultPruneInterval,
		SuspendAfter:         DefaultSuspendAfter,
		LogLevel:             "info",
		LogFormat:            "json",
		Tracing:              os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "",
		Limits:               policy.DefaultLimits,
	}
}

// RegisterFlags defines a flag for every field, defaulting to c's values.
// dev adds the flags only dev mode has.
func (c *Config) RegisterFlags(fs *flag.FlagSet, dev bool) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC API listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP edge listen address (health, readiness, CloudEvents ingest)")
	fs.StringVar(&c.Store, "store", c.Store, "database: postgres://... URL or SQLite file path")
	fs.BoolVar(&c.Migrate, "migrate", c.Migrate, "apply the store's pending migrations at start (otherwise a PostgreSQL store must be current: herald migrate up)")
	fs.StringVar(&c.TemporalAddr, "temporal-addr", c.TemporalAddr, "Temporal frontend address")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", c.TemporalNamespace, "Temporal namespace")
	fs.BoolVar(&c.TemporalTLS, "temporal-tls", c.TemporalTLS, "connect to Temporal over TLS (implied by the other --temporal-tls-* flags and --temporal-api-key)")
	fs.StringVar(&c.TemporalTLSCA, "temporal-tls-ca", c.TemporalTLSCA, "PEM certificate authorities to trust for Temporal instead of the system's")
	fs.StringVar(&c.TemporalTLSCert, "temporal-tls-cert", c.TemporalTLSCert, "PEM client certificate for Temporal (mTLS)")
	fs.StringVar(&c.TemporalTLSKey, "temporal-tls-key", c.TemporalTLSKey, "PEM private key of --temporal-tls-cert")
	fs.StringVar(&c.TemporalTLSServerName, "temporal-tls-server-name", c.TemporalTLSServerName, "name to verify Temporal's certificate against (default: the address's host)")
	fs.StringVar(&c.TemporalAPIKey, "temporal-api-key", c.TemporalAPIKey, "API key for Temporal Cloud (prefer HERALD_TEMPORAL_API_KEY)")
	fs.StringVar(&c.TaskQueue, "task-queue", c.TaskQueue, "Temporal task queue of Herald's workers")
	fs.BoolVar(&c.AllowInsecureSinks, "allow-insecure-sinks", c.AllowInsecureSinks, "accept http:// sinks")
	fs.BoolVar(&c.AllowPrivateSinks, "allow-private-sinks", c.AllowPrivateSinks, "let sinks be at loopback, private, link-local and other non-public addresses")
	fs.Var((*listValue)(&c.SinkAllowCIDRs), "sink-allow-cidrs", "comma-separated address ranges sinks may be at even when private sinks are not allowed")
	fs.Var((*listValue)(&c.SharedSinkHosts), "shared-sink-hosts", "comma-separated sink hosts (name or *.domain) shared by unrelated receivers: a subscription there keeps its Retry-After pauses and granted rate to itself")
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
	fs.DurationVar(&c.Lease, "lease", c.Lease, "how long a node may keep a claimed delivery before its request starts")
	fs.DurationVar(&c.LeaseRenew, "lease-renew", c.LeaseRenew, "how long a claim lasts unless the node renews it (it does every tenth of it while it holds the delivery; at most --lease): how soon other nodes take over a dead node's deliveries")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this node's stable identity in its claims, unique among running nodes (default: the host name; in Kubernetes, a StatefulSet pod's name)")
	fs.DurationVar(&c.CatalogReload, "catalog-reload", c.CatalogReload, "how often subscriptions are reloaded")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "connections each listener (gRPC, HTTP) holds at most; more wait to be accepted")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "graceful shutdown limit")
	fs.DurationVar(&c.RetentionDelivered, "retention-delivered", c.RetentionDelivered, "how long a delivered delivery (and its event, when its last) is kept; 0 keeps forever")
	fs.DurationVar(&c.RetentionDead, "retention-dead", c.RetentionDead, "how long a dead-lettered delivery is kept; 0 keeps forever")
	fs.DurationVar(&c.SuspendAfter, "suspend-after", c.SuspendAfter, "how long a sink may fail every attempt before its subscription is suspended (its events held until it is enabled); a subscription's suspend_after wins")
	fs.DurationVar(&c.PruneInterval, "prune-interval", c.PruneInterval, "how often a pruning pass starts (one node at a time prunes)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "how long a stopping node keeps serving while it reports not ready, for load balancers to move away")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json or text")
	fs.BoolVar(&c.Tracing, "tracing", c.Tracing, "send OpenTelemetry traces over OTLP, as the OTEL_* variables say (default: on when OTEL_EXPORTER_OTLP_ENDPOINT is set)")
	fs.StringVar(&c.AdminKey, "admin-key", c.AdminKey, "an API key with the admin scope, never stored (prefer the HERALD_ADMIN_KEY environment variable; make one with: herald keys new)")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", c.InsecureNoAuth, "serve without authenticating callers (never in production)")
	fs.BoolVar(&c.MetricsOpen, "metrics-open", c.MetricsOpen, "serve /metrics without an API key")
	fs.Float64Var(&c.PublishRate, "publish-rate", c.PublishRate, "events per second each API key may publish on this node, unless the key says (0: no limit)")
	fs.IntVar(&c.PublishBurst, "publish-burst", c.PublishBurst, "events each API key may publish in a burst above its rate (0: one second's worth)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) to serve the gRPC API and the HTTP edge over TLS")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "PEM certificate authorities whose client certificates are required (mTLS)")
	fs.Var((*listValue)(&c.TLSClientAdmins), "tls-client-admins", "comma-separated client certificate subject common names that hold the admin scope")
	fs.Var((*listValue)(&c.AllowClientCIDRs), "allow-client-cidrs", "comma-separated address ranges the gRPC API and the HTTP edge accept connections from (default: any)")
	fs.Var((*listValue)(&c.EncryptionKeys), "encryption-key", "keys that encrypt secrets at rest, id:base64, comma-separated, the first encrypting (prefer HERALD_ENCRYPTION_KEY; make one with: herald encryption new-key)")
	fs.StringVar(&c.SinkCA, "sink-ca", c.SinkCA, "PEM certificate authorities trusted for sinks besides the system's")
	fs.IntVar(&c.Limits.MaxEventSize, "max-event-size", c.Limits.MaxEventSize, "largest event accepted, in bytes of its protobuf encoding")
	fs.IntVar(&c.Limits.MaxEventsPerPublish, "max-events-per-publish", c.Limits.MaxEventsPerPublish, "most events in one Publish call or ingest batch")
	fs.IntVar(&c.Limits.MaxRequestSize, "max-request-size", c.Limits.MaxRequestSize, "largest gRPC request and batched ingest body, in bytes")
	fs.IntVar(&c.Limits.MaxSubscriptionsPerTenant, "max-subscriptions-per-tenant", c.Limits.MaxSubscriptionsPerTenant, "most subscriptions a tenant may have")
	fs.IntVar(&c.Limits.MaxHeadersPerSubscription, "max-headers-per-subscription", c.Limits.MaxHeadersPerSubscription, "most static headers a subscription may set")
	fs.Var((*listValue)(&c.AllowedOrigins), "allowed-origins", "comma-separated sender DNS names granted in the webhook validation handshake")
	fs.IntVar(&c.IngestRate, "ingest-rate", c.IngestRate, "requests per minute granted in the webhook validation handshake (0: no limit)")
	fs.BoolVar(&c.AutoGrantCallbacks, "auto-grant-callbacks", c.AutoGrantCallbacks, "grant handshakes that ask for a callback by calling the callback URL")
	if dev {
		fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded databases")
		fs.StringVar(&c.UIAddr, "ui-addr", c.UIAddr, "Temporal Web UI listen address (empty disables it)")
	}
}

// Parse fills c from a configuration file (--config, or HERALD_CONFIG),
// then the environment (HERALD_<FLAG>, e.g. HERALD_GRPC_ADDR), then args:
// flags take precedence over the environment, the environment over the
// file, and the file over the defaults.
func (c *Config) Parse(fs *flag.FlagSet, args []string) error {
	var file string
	if fs.Lookup("config") == nil {
		fs.StringVar(&file, "config", "", "a YAML file of settings, keyed by flag name (see docs/operations.md)")
	}
	path := configPath(args)
	if path == "" {
		path = os.Getenv("HERALD_CONFIG")
	}
	if path != "" {
		if err := loadFile(fs, path); err != nil {
			return err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		env := EnvName(f.Name)
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

// EnvName is the environment variable of a flag: HERALD_ and its name in
// capitals with underscores.
func EnvName(flag string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// configPath finds --config in args before the flags are parsed.
func configPath(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// loadFile sets flags from a YAML file of flag names and values: scalars,
// or lists for list flags. A key that names no flag is an error, so a
// typo is never silently ignored.
func loadFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for _, key := range slices.Sorted(maps.Keys(m)) {
		if key == "config" || fs.Lookup(key) == nil {
			return fmt.Errorf("config file %s: %q is not a setting (settings are the flags' names, e.g. grpc-addr)", path, key)
		}
		var v string
		switch x := m[key].(type) {
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			v = strings.Join(parts, ",")
		case nil:
			continue
		default:
			v = fmt.Sprint(x)
		}
		if err := fs.Set(key, v); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, key, err)
		}
	}
	return nil
}

// secretSettings are the settings whose values Effective masks.
var secretSettings = map[string]bool{"admin-key": true, "encryption-key": true, "temporal-api-key": true}

// Effective returns every setting of fs as "name: value" lines, as YAML
// a --config file takes, with secrets masked (and a store URL's
// password).
func Effective(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		v := f.Value.String()
		switch {
		case secretSettings[f.Name] && v != "":
			v = "(set, not shown)"
		case f.Name == "store":
			if u, err := url.Parse(v); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					u.User = url.UserPassword(u.User.Username(), "xxxxx")
					v = u.String()
				}
			}
		}
		fmt.Fprintf(&b, "%s: %q\n", f.Name, v)
	})
	return b.String()
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
	if c.LeaseRenew < MinLeaseRenew {
		// A request starts only while the request timeout and a margin
		// are left of its claim, which is renewed every tenth of it.
		errs = append(errs, fmt.Errorf("lease-renew must be at least %s (the request timeout and a margin)", MinLeaseRenew))
	}
	if !validNodeID(c.NodeID) {
		errs = append(errs, fmt.Errorf("node-id %q must be 1 to %d printable characters without spaces", c.NodeID, maxNodeID))
	}
	if c.CatalogReload <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("catalog-reload and shutdown-timeout must be positive"))
	}
	if c.RetentionDelivered < 0 || c.RetentionDead < 0 || c.PruneInterval <= 0 {
		errs = append(errs, errors.New("retention-delivered and retention-dead must not be negative, prune-interval positive"))
	}
	if c.SuspendAfter < time.Second {
		errs = append(errs, errors.New("suspend-after must be at least 1s"))
	}
	if c.DrainDelay < 0 || c.DrainDelay >= c.ShutdownTimeout {
		errs = append(errs, errors.New("drain-delay must be at least 0 and shorter than shutdown-timeout"))
	}
	if !isDNSName(c.Origin) {
		errs = append(errs, fmt.Errorf("origin %q is not a DNS name", c.Origin))
	}
	if c.IngestRate < 0 {
		errs = append(errs, errors.New("ingest-rate must not be negative"))
	}
	if !(c.PublishRate >= 0 && c.PublishRate <= policy.MaxPublishRate) || c.PublishBurst < 0 {
		errs = append(errs, fmt.Errorf("publish-rate must be between 0 and %d, publish-burst not negative", policy.MaxPublishRate))
	}
	if l := c.Limits; l.MaxEventSize <= 0 || l.MaxEventsPerPublish <= 0 || l.MaxRequestSize < l.MaxEventSize ||
		l.MaxSubscriptionsPerTenant <= 0 || l.MaxHeadersPerSubscription < 0 {
		errs = append(errs, errors.New("the max-* limits must be positive, and max-request-size at least max-event-size"))
	}
	if (c.TemporalTLSCert == "") != (c.TemporalTLSKey == "") {
		errs = append(errs, errors.New("temporal-tls-cert and temporal-tls-key go together"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("tls-client-ca needs tls-cert and tls-key: client certificates are asked for over TLS"))
	}
	if _, err := c.ClientAllowPrefixes(); err != nil {
		errs = append(errs, err)
	}
	if !c.Dev && c.AdminKey == "" && c.TLSClientCA == "" && !c.InsecureNoAuth {
		errs = append(errs, errors.New("herald serve authenticates its callers: give it an admin key (HERALD_ADMIN_KEY; make one with `herald keys new`), client certificates (--tls-client-ca), or --insecure-no-auth"))
	}
	if !c.Dev && len(c.EncryptionKeys) == 0 {
		errs = append(errs, errors.New("herald serve encrypts secrets at rest: give it an encryption key (HERALD_ENCRYPTION_KEY; make one with: herald encryption new-key)"))
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
	for i, h := range c.SharedSinkHosts {
		if !isDNSName(strings.TrimPrefix(h, "*.")) {
			errs = append(errs, fmt.Errorf("shared-sink-hosts: %q is not a DNS name or *.domain", h))
		}
		c.SharedSinkHosts[i] = strings.ToLower(h)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("log-format %q: want json or text", c.LogFormat))
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
	return parsePrefixes("sink-allow-cidrs", c.SinkAllowCIDRs)
}

func parsePrefixes(flag string, ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an address range (CIDR): %v", flag, s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ClientAllowPrefixes parses AllowClientCIDRs.
func (c *Config) ClientAllowPrefixes() ([]netip.Prefix, error) {
	return parsePrefixes("allow-client-cidrs", c.AllowClientCIDRs)
}

// Authenticates reports whether the node authenticates its callers.
func (c *Config) Authenticates() bool {
	return c.AdminKey != "" || c.TLSClientCA != "" || !(c.Dev || c.InsecureNoAuth)
}

// TemporalUsesTLS reports whether Herald connects to Temporal over TLS.
func (c *Config) TemporalUsesTLS() bool {
	return c.TemporalTLS || c.TemporalTLSCA != "" || c.TemporalTLSCert != "" || c.TemporalTLSServerName != "" || c.TemporalAPIKey != ""
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
// MinLeaseRenew is the shortest claim lease: the request timeout and a
// margin, for renewals that come every tenth of it.
const MinLeaseRenew = policy.RequestTimeout + 5*time.Second

// maxNodeID is the longest node ID.
const maxNodeID = 200

// hostname is the default node ID: the host's name, or "herald".
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "herald"
	}
	return h
}

// validNodeID reports whether s is a node ID: printable ASCII without
// spaces, at most maxNodeID long.
func validNodeID(s string) bool {
	if s == "" || len(s) > maxNodeID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

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
