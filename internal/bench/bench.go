// Package bench measures Herald end to end: a load generator, a verifying
// sink and a raw baseline.
//
// Run starts (or connects to) a Herald node, serves a loopback sink that
// verifies every Standard Webhooks signature and records when each event
// arrives, subscribes it, publishes 1 KiB JSON events over gRPC, waits for
// them to be delivered and reports publish and delivery throughput and
// latency, lost and duplicated events, and the CPU and memory used. With a
// baseline it also measures the same sink driven by a plain signing HTTP
// client, the ceiling of this machine, and reports Herald as a ratio of it.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/clients/signing"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
)

// Config configures a bench run.
type Config struct {
	// Target is the gRPC address of a running Herald to drive, or a
	// comma-separated list of the nodes of one cluster: the publishers'
	// connections are spread over them round robin, and the subscriptions
	// are created through the first. Empty starts one in this process
	// (embedded Temporal, and SQLite in a temporary directory unless Store
	// is set). A target must accept http:// sinks and reach SinkAddr.
	Target string
	// Store is the in-process node's database: a postgres:// URL, or empty
	// for SQLite in a temporary directory.
	Store string
	// MaxInFlight, ClaimBatch and Queue tune the in-process node (0: its
	// defaults).
	MaxInFlight int
	ClaimBatch  int
	Queue       int
	// Start starts the in-process node (see package inprocess); it is
	// needed unless Target is set. It is a field, not an import, so that
	// this package's tests do not link the Temporal server.
	Start StartFunc

	// Events is how many events to publish. 0 means 10,000 unless
	// Duration is set, and then no count limit.
	Events int
	// Duration bounds the publishing time (0: MaxLoadTime).
	Duration time.Duration
	// Rate is events per second; 0 publishes as fast as Publishers go.
	Rate float64
	// Publishers is how many Publish calls are in flight at most; the
	// baseline uses as many HTTP senders.
	Publishers int
	// Batch is how many events each Publish call carries (1 to 1000).
	Batch int
	// FailRate is the fraction of first attempts the sink answers 500, to
	// measure retries (0 to 1).
	FailRate float64
	// Sinks is how many sinks (each its own origin, with a subscription
	// of its own) the events are spread over, round robin (default 1).
	Sinks int
	// SinkLatency is how long a healthy sink takes to answer: a duration
	// or "lognormal:median=100ms,p99=800ms" (default: at once).
	SinkLatency string
	// BadSinks is the share of the sinks (0 to 1) that are bad, each
	// answering as BadSinkMode says (hang, 500, close or slow). Their
	// events are reported apart from the healthy sinks'.
	BadSinks    float64
	BadSinkMode string
	// RateLimit is each subscription's rate_limit, in requests per minute
	// (0: none).
	RateLimit int
	// Outage makes every sink drop every request for this long after
	// publishing starts; then they recover. With RetryMax, the longest
	// wait between retries, it measures how soon retries drain.
	Outage   time.Duration
	RetryMax time.Duration
	// DrainTimeout is how long to wait for deliveries after publishing
	// ends; events not delivered by then are counted lost.
	DrainTimeout time.Duration
	// Baseline also measures a plain signing HTTP client against the sink.
	Baseline bool

	// SinkAddr is where the sink listens (default 127.0.0.1:0).
	SinkAddr string
	// JSON prints the result as JSON instead of a table.
	JSON bool
	// CPUProfile, if set, is a file for a CPU profile of the measured
	// Herald phase (publishing and draining).
	CPUProfile string
	// MemProfile, if set, is a file for an allocation profile written at
	// the end of the measured Herald phase (it counts from process start,
	// so the setup's allocations are in it too).
	MemProfile string
	// Trace, if set, is a file for a runtime execution trace of the
	// measured Herald phase (go tool trace): where goroutines waited and
	// when the CPUs were idle.
	Trace string
	// LogLevel is the in-process node's log level (default warn).
	LogLevel string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// StartFunc starts a Herald node in this process.
type StartFunc func(ctx context.Context, opts NodeOptions) (Node, error)

// NodeOptions configure an in-process node.
type NodeOptions struct {
	// Store is a postgres:// URL, or empty for SQLite in a temporary
	// directory.
	Store string
	// MaxInFlight, ClaimBatch and Queue tune the node (0: Herald's
	// defaults).
	MaxInFlight int
	ClaimBatch  int
	Queue       int
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Log receives the node's log lines.
	Log io.Writer
}

// Node is a running in-process Herald node.
type Node interface {
	// GRPCAddr is where its gRPC API listens.
	GRPCAddr() string
	// Stop stops it and removes its files; it may be called more than
	// once.
	Stop()
}

// MaxLoadTime bounds the publishing phase when Duration is not set.
const MaxLoadTime = 10 * time.Minute

// DefaultEvents is how many events are published when neither Events nor
// Duration is set.
const DefaultEvents = 10_000

// DefaultConfig returns the defaults of `herald bench`.
func DefaultConfig() Config {
	return Config{
		Publishers:   64,
		Batch:        1,
		Sinks:        1,
		BadSinkMode:  BadHang,
		DrainTimeout: time.Minute,
		SinkAddr:     "127.0.0.1:0",
		LogLevel:     "warn",
	}
}

// RegisterFlags defines a flag for every field, defaulting to c's values.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Target, "target", c.Target, "gRPC address of a running Herald to drive, or comma-separated addresses of several nodes to publish through round robin (default: start one in this process)")
	fs.StringVar(&c.Store, "store", c.Store, "in-process node's database: postgres://... URL (default: SQLite in a temporary directory)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "in-process node's webhook requests in flight at most (0: Herald's default)")
	fs.IntVar(&c.ClaimBatch, "claim-batch", c.ClaimBatch, "in-process node's claim batch (0: Herald's default)")
	fs.IntVar(&c.Queue, "queue", c.Queue, "in-process node's dispatcher queue (0: Herald's default)")
	fs.IntVar(&c.Events, "events", c.Events, "events to publish (0: 10000, or no count limit with --duration)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "publishing time limit (0: "+MaxLoadTime.String()+")")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "events per second (0: as fast as possible)")
	fs.IntVar(&c.Publishers, "publishers", c.Publishers, "concurrent Publish calls (and baseline HTTP senders)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "events per Publish call (1 to 1000)")
	fs.Float64Var(&c.FailRate, "fail-rate", c.FailRate, "fraction of first attempts the sink answers 500 (0 to 1)")
	fs.IntVar(&c.Sinks, "sinks", c.Sinks, "sinks (origins) the events are spread over, one subscription each")
	fs.StringVar(&c.SinkLatency, "sink-latency", c.SinkLatency, "healthy sinks' answer time: a duration, or lognormal:median=100ms,p99=800ms")
	fs.Float64Var(&c.BadSinks, "bad-sinks", c.BadSinks, "share of the sinks that are bad (0 to 1)")
	fs.StringVar(&c.BadSinkMode, "bad-sink-mode", c.BadSinkMode, "how bad sinks answer: hang, 500, close or slow")
	fs.IntVar(&c.RateLimit, "rate-limit", c.RateLimit, "each subscription's rate limit, requests per minute (0: none)")
	fs.DurationVar(&c.Outage, "outage", c.Outage, "every sink drops every request for this long after publishing starts, then recovers")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "the subscriptions' longest wait between retries (default 1s)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long to wait for deliveries after publishing; later ones count as lost")
	fs.BoolVar(&c.Baseline, "baseline", c.Baseline, "also measure a plain signing HTTP client against the same sink")
	fs.StringVar(&c.SinkAddr, "sink-addr", c.SinkAddr, "where the sink listens")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print JSON instead of a table")
	fs.StringVar(&c.CPUProfile, "cpuprofile", c.CPUProfile, "write a CPU profile of the measured phase to this file")
	fs.StringVar(&c.MemProfile, "memprofile", c.MemProfile, "write an allocation profile to this file after the measured phase")
	fs.StringVar(&c.Trace, "trace", c.Trace, "write a runtime execution trace of the measured phase to this file (go tool trace)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "in-process node's log level: debug, info, warn or error")
}

// validate checks c and fills in derived defaults.
func (c *Config) validate() error {
	var errs []error
	if c.Events < 0 || c.Duration < 0 || c.Rate < 0 || c.DrainTimeout < 0 {
		errs = append(errs, errors.New("events, duration, rate and drain-timeout must not be negative"))
	}
	if c.Events == 0 && c.Duration == 0 {
		c.Events = DefaultEvents
	}
	if c.Duration == 0 {
		c.Duration = MaxLoadTime
	}
	if c.Publishers < 1 {
		errs = append(errs, errors.New("publishers must be at least 1"))
	}
	if c.Batch < 1 || c.Batch > 1000 {
		errs = append(errs, errors.New("batch must be 1 to 1000"))
	}
	if c.FailRate < 0 || c.FailRate > 1 {
		errs = append(errs, errors.New("fail-rate must be 0 to 1"))
	}
	if c.Sinks < 1 {
		errs = append(errs, errors.New("sinks must be at least 1"))
	}
	if _, err := ParseLatency(c.SinkLatency); err != nil {
		errs = append(errs, err)
	}
	if c.BadSinks < 0 || c.BadSinks >= 1 {
		errs = append(errs, errors.New("bad-sinks must be 0 or more and less than 1"))
	}
	switch c.BadSinkMode {
	case BadHang, Bad500, BadClose, BadSlow:
	default:
		errs = append(errs, fmt.Errorf("bad-sink-mode %q: want hang, 500, close or slow", c.BadSinkMode))
	}
	if c.RateLimit < 0 || c.Outage < 0 || c.RetryMax < 0 {
		errs = append(errs, errors.New("rate-limit, outage and retry-max must not be negative"))
	}
	if c.Target != "" {
		if _, err := splitTargets(c.Target); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Target != "" && (c.Store != "" || c.MaxInFlight != 0 || c.ClaimBatch != 0 || c.Queue != 0) {
		errs = append(errs, errors.New("store, max-in-flight, claim-batch and queue apply only to an in-process node, not with --target"))
	}
	if c.Target == "" && c.Start == nil {
		errs = append(errs, errors.New("no in-process node available: set --target"))
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		errs = append(errs, errors.New("store must be a postgres:// URL (SQLite is the default)"))
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = time.Minute
	}
	if c.Sinks == 0 {
		c.Sinks = 1
	}
	if c.BadSinkMode == "" {
		c.BadSinkMode = BadHang
	}
	if c.SinkAddr == "" {
		c.SinkAddr = "127.0.0.1:0"
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	return errors.Join(errs...)
}

// Result is everything a run measured.
type Result struct {
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Herald   Herald    `json:"herald"`
	// Baseline is set when the run had one: measured right after Herald.
	Baseline *BaselineResult `json:"baseline,omitempty"`
	// BaselineBefore is the same measured right before Herald (with a
	// fixed event count): the machine's speed can drift within a run.
	BaselineBefore *BaselineResult `json:"baseline_before,omitempty"`
	// Ratio is Herald's delivery throughput over the baseline's, the mean
	// of the two baselines when there are both (0 without a baseline).
	Ratio float64 `json:"ratio,omitempty"`
}

// baselineRate is the baseline's rate: the mean of the runs before and
// after Herald, or the one there is.
func (r *Result) baselineRate() float64 {
	switch {
	case r.Baseline == nil:
		return 0
	case r.BaselineBefore == nil:
		return r.Baseline.Rate
	}
	return (r.Baseline.Rate + r.BaselineBefore.Rate) / 2
}

// Settings are the run's parameters as applied.
type Settings struct {
	Mode         string        `json:"mode"` // in-process sqlite, in-process postgres, or target
	Target       string        `json:"target,omitempty"`
	Events       int           `json:"events"` // 0: bounded by Duration
	Duration     time.Duration `json:"duration_ns"`
	Rate         float64       `json:"rate"`
	Publishers   int           `json:"publishers"`
	Batch        int           `json:"batch"`
	EventSize    int           `json:"event_size"`
	FailRate     float64       `json:"fail_rate"`
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
	Sinks        int           `json:"sinks"`
	SinkLatency  string        `json:"sink_latency,omitempty"`
	BadSinks     int           `json:"bad_sinks,omitempty"`
	BadSinkMode  string        `json:"bad_sink_mode,omitempty"`
	RateLimit    int           `json:"rate_limit,omitempty"`
	Outage       time.Duration `json:"outage_ns,omitempty"`
	RetryMax     time.Duration `json:"retry_max_ns,omitempty"`
}

// Herald is what the Herald phase measured.
type Herald struct {
	Publish  Publish   `json:"publish"`
	Delivery Delivery  `json:"delivery"`
	Sink     SinkStats `json:"sink"`
	// DeliveryRate is delivered events per second, from the first
	// Publish call to the last event's arrival. With bad sinks, Publish,
	// Delivery, Sink and DeliveryRate count the healthy sinks only.
	DeliveryRate float64 `json:"delivery_rate"`
	Usage        Usage   `json:"usage"`
	// Bad is what the bad sinks got, when there are any.
	Bad *BadSinks `json:"bad_sinks,omitempty"`
	// Peak is the most of each resource seen during the run.
	Peak Peak `json:"peak"`
	// Recovered is, after an outage, from its end to the last delivery.
	Recovered time.Duration `json:"recovered_ns,omitempty"`
}

// BadSinks is what the bad sinks of a run got.
type BadSinks struct {
	Sinks    int       `json:"sinks"`
	Mode     string    `json:"mode"`
	Expected int       `json:"expected"` // events published for them
	Requests int       `json:"requests"` // requests that reached their handler (answered or not)
	Delivery Delivery  `json:"delivery"`
	Sink     SinkStats `json:"sink"`
}

// Peak is the most of each resource sampled during a run.
type Peak struct {
	// InFlight is the node's webhook requests in flight
	// (herald_requests_in_flight; in this process only).
	InFlight int `json:"in_flight"`
	// Waiting is its requests waiting for their turn.
	Waiting int `json:"waiting"`
	// Connections is the open connections to the sinks.
	Connections int `json:"connections"`
	// Refused is the requests the node's scheduler refused and put back
	// in the store since the node started (the warm-up included), by
	// reason (queue_full: over their origin's share; breaker_open;
	// deadline). Not a peak: a count.
	Refused map[string]int64 `json:"refused,omitempty"`
	// Goroutines is this process's goroutines.
	Goroutines int `json:"goroutines"`
}

// Publish is what the load generator saw.
type Publish struct {
	Events     int           `json:"events"`   // events sent in Publish calls
	Accepted   int           `json:"accepted"` // ACCEPTED with a delivery
	Calls      int           `json:"calls"`
	Errors     int           `json:"errors"` // failed calls
	FirstError string        `json:"first_error,omitempty"`
	NoMatch    int           `json:"no_match"`   // ACCEPTED without a delivery
	Duplicates int           `json:"duplicates"` // DUPLICATE answers
	Wall       time.Duration `json:"wall_ns"`
	// Rate is accepted events per second of Wall.
	Rate float64 `json:"rate"`
	// Latency is per Publish call.
	Latency Latency `json:"latency"`
	// MaxLag is, at a fixed rate, the most a call started behind schedule.
	MaxLag time.Duration `json:"max_lag_ns,omitempty"`
}

// BaselineResult is what the raw baseline measured.
type BaselineResult struct {
	Events   int       `json:"events"`
	Workers  int       `json:"workers"`
	Errors   int       `json:"errors"`
	Delivery Delivery  `json:"delivery"`
	Sink     SinkStats `json:"sink"`
	// Rate is requests the sink accepted per second.
	Rate float64 `json:"rate"`
	// Latency is per request, from sending to the response.
	Latency Latency `json:"latency"`
	Usage   Usage   `json:"usage"`
}

// Run runs a bench as cfg says and writes the result to out. It stops by
// itself: publishing is bounded by cfg.Events and cfg.Duration, and
// draining by cfg.DrainTimeout.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }
	res := &Result{
		Date:    time.Now().UTC().Truncate(time.Second),
		Machine: machineInfo(),
		Settings: Settings{
			Target:       cfg.Target,
			Events:       cfg.Events,
			Duration:     cfg.Duration,
			Rate:         cfg.Rate,
			Publishers:   cfg.Publishers,
			Batch:        cfg.Batch,
			EventSize:    eventSize,
			FailRate:     cfg.FailRate,
			DrainTimeout: cfg.DrainTimeout,
			Sinks:        cfg.Sinks,
			SinkLatency:  cfg.SinkLatency,
			RateLimit:    cfg.RateLimit,
			Outage:       cfg.Outage,
			RetryMax:     cfg.RetryMax,
		},
	}
	for i := range cfg.Sinks {
		if badSink(i, cfg.Sinks, cfg.BadSinks) {
			res.Settings.BadSinks++
		}
	}
	if res.Settings.BadSinks > 0 {
		res.Settings.BadSinkMode = cfg.BadSinkMode
	}
	runID := newRunID()
	if cfg.Baseline && cfg.Events > 0 {
		logf("baseline before Herald: %d events from %d HTTP senders", cfg.Events, cfg.Publishers)
		b, err := runBaseline(ctx, cfg, cfg.Events, newRunID())
		if err != nil {
			return err
		}
		res.BaselineBefore = b
	}

	targets, _ := splitTargets(cfg.Target) // validated
	scope := "this process only: load generator and sink (Herald runs elsewhere)"
	var node Node
	if len(targets) > 0 {
		res.Settings.Mode = "target"
	} else {
		res.Settings.Mode = "in-process sqlite"
		scope = "this process: Herald, embedded Temporal, SQLite, load generator and sink"
		if cfg.Store != "" {
			res.Settings.Mode = "in-process postgres"
			scope = "this process: Herald, embedded Temporal, load generator and sink (not the Postgres server)"
		}
		logf("starting Herald in this process (embedded Temporal, %s)", strings.TrimPrefix(res.Settings.Mode, "in-process "))
		logOut := cfg.Progress
		if logOut == nil {
			logOut = os.Stderr
		}
		var err error
		node, err = cfg.Start(ctx, NodeOptions{
			Store:       cfg.Store,
			MaxInFlight: cfg.MaxInFlight,
			ClaimBatch:  cfg.ClaimBatch,
			Queue:       cfg.Queue,
			LogLevel:    cfg.LogLevel,
			Log:         logOut,
		})
		if err != nil {
			return err
		}
		defer node.Stop()
		targets = []string{node.GRPCAddr()}
	}

	if err := runHerald(ctx, cfg, targets, runID, scope, res, logf); err != nil {
		return err
	}
	if node != nil {
		logf("stopping Herald")
		node.Stop()
	}

	if cfg.Baseline {
		n := res.Herald.Publish.Events
		if n == 0 {
			n = cfg.Events
		}
		logf("baseline: %d events from %d HTTP senders", n, cfg.Publishers)
		b, err := runBaseline(ctx, cfg, n, runID)
		if err != nil {
			return err
		}
		res.Baseline = b
		if r := res.baselineRate(); r > 0 {
			res.Ratio = res.Herald.DeliveryRate / r
		}
	}

	if cfg.JSON {
		return writeJSON(out, res)
	}
	return writeTable(out, res)
}

// splitTargets returns the addresses of a comma-separated --target.
func splitTargets(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	targets := strings.Split(s, ",")
	for i, t := range targets {
		targets[i] = strings.TrimSpace(t)
		if targets[i] == "" {
			return nil, fmt.Errorf("target %q: an empty address in the list", s)
		}
	}
	return targets, nil
}

// connTargets returns the address of each Publish connection: one
// connection per 16 publishers, at most 8, rounded up to a multiple of the
// targets and spread over them round robin. Publisher i uses connection
// i%len (see LoadConfig.Clients), so it publishes to target i%len(targets).
func connTargets(targets []string, publishers int) []string {
	n := min((publishers+15)/16, 8)
	n = (n + len(targets) - 1) / len(targets) * len(targets)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = targets[i%len(targets)]
	}
	return addrs
}

// runHerald measures Herald at targets (the nodes of one cluster) and
// fills res.Herald.
func runHerald(ctx context.Context, cfg Config, targets []string, runID, scope string, res *Result, logf func(string, ...any)) error {
	addrs := connTargets(targets, cfg.Publishers)
	clients := make([]heraldv1.PublishServiceClient, len(addrs))
	var subs heraldv1.SubscriptionServiceClient
	for i, target := range addrs {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("connect to Herald at %s: %w", target, err)
		}
		defer conn.Close()
		clients[i] = heraldv1.NewPublishServiceClient(conn)
		if i == 0 {
			subs = heraldv1.NewSubscriptionServiceClient(conn)
		}
	}

	// The sinks listen first, so that their URLs can go into the
	// subscriptions, and serve once the subscriptions' secrets are known.
	latency, _ := ParseLatency(cfg.SinkLatency)
	fl, err := listenFleet(cfg.SinkAddr, cfg.Sinks)
	if err != nil {
		return fmt.Errorf("sinks: %w", err)
	}
	defer fl.close()
	base := eventSource + "/" + runID
	sources := make([]string, cfg.Sinks)
	retry := &heraldv1.RetryPolicy{
		InitialInterval:    durationpb.New(100 * time.Millisecond),
		BackoffCoefficient: 2,
		MaximumInterval:    durationpb.New(time.Second),
		MaximumAttempts:    10,
	}
	if cfg.RetryMax > 0 {
		retry.MaximumInterval = durationpb.New(cfg.RetryMax)
	}
	if cfg.Outage > 0 {
		// Enough attempts to outlast the outage.
		retry.MaximumAttempts = int32(20 + 2*cfg.Outage/max(cfg.RetryMax, time.Second))
	}
	var downTil time.Time
	var healthy []*Sink
	var bad []*Sink
	for i := range cfg.Sinks {
		sources[i] = base
		if cfg.Sinks > 1 {
			sources[i] = sourceOf(base, i)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sub, err := subs.CreateSubscription(cctx, &heraldv1.CreateSubscriptionRequest{Subscription: &heraldv1.Subscription{
			Sink:     fl.URL(i),
			Protocol: "HTTP",
			Source:   sources[i],
			Types:    []string{eventType},
			// The sinks would grant the handshake, but it is not what is
			// measured.
			SkipValidation: true,
			// Short waits, so that retries finish within the run.
			RetryPolicy: retry,
			RateLimit:   int32(cfg.RateLimit),
		}})
		cancel()
		if err != nil {
			return fmt.Errorf("create subscription: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_, _ = subs.DeleteSubscription(dctx, &heraldv1.DeleteSubscriptionRequest{Id: sub.GetId()})
		}()
		sink, err := NewSink(sub.GetSigningSecret(), cfg.FailRate)
		if err != nil {
			return fmt.Errorf("sink: %w", err)
		}
		mode := ""
		if badSink(i, cfg.Sinks, cfg.BadSinks) {
			mode = cfg.BadSinkMode
			bad = append(bad, sink)
		} else {
			healthy = append(healthy, sink)
		}
		fl.serve(i, sink, latency, mode)
	}

	// Warm-up events prove the subscriptions live on every target before
	// measuring (client t is connected to targets[t]).
	logf("warming up")
	for i, fs := range fl.sinks {
		if fs.bad {
			continue
		}
		for t := range targets {
			id := fmt.Sprintf("%s-%d", runID, i)
			if t > 0 {
				id += fmt.Sprintf("-%d", t)
			}
			if err := warmUp(ctx, clients[t], fs.sink, sources[i], id); err != nil {
				return fmt.Errorf("%s: %w", targets[t], err)
			}
		}
	}
	if cfg.Outage > 0 {
		downTil = time.Now().Add(cfg.Outage)
		for _, fs := range fl.sinks {
			setDown(fs, downTil)
		}
	}
	baseDelivered := 0
	for _, sk := range healthy {
		baseDelivered += sk.Delivered()
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.Trace != "" {
		f, err := os.Create(cfg.Trace)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	logf("publishing to %s: %s", strings.Join(targets, ", "), describeSettings(res.Settings))
	m := startMeter()
	peaks, stopPeaks := samplePeaks(fl)
	load := Load(ctx, LoadConfig{
		Clients:    clients,
		Events:     cfg.Events,
		Duration:   cfg.Duration,
		Rate:       cfg.Rate,
		Publishers: cfg.Publishers,
		Batch:      cfg.Batch,
		Prefix:     runID + "-",
		Sources:    sources,
	})
	isBad := func(s Sent) bool { return fl.sinks[s.Sink].bad }
	var healthySent, badSent []Sent
	accepted, badAccepted := 0, 0
	for _, s := range load.Sent {
		if isBad(s) {
			badSent = append(badSent, s)
			if s.Accepted {
				badAccepted++
			}
			continue
		}
		healthySent = append(healthySent, s)
		if s.Accepted {
			accepted++
		}
	}
	drain := cfg.DrainTimeout
	if cfg.Outage > 0 {
		drain = max(drain, time.Until(downTil)+time.Minute)
	}
	logf("published %d events (%d accepted) in %s; draining (up to %s)",
		len(load.Sent), accepted+badAccepted, load.End.Sub(load.Start).Round(time.Millisecond), drain)
	dctx, cancel := context.WithTimeout(ctx, drain)
	err = awaitAll(dctx, healthy, baseDelivered+accepted)
	cancel()
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	stopPeaks()
	usage := m.stop(scope)
	pprof.StopCPUProfile()
	trace.Stop()
	if cfg.MemProfile != "" {
		if err := writeAllocs(cfg.MemProfile); err != nil {
			return err
		}
	}

	d := Account(healthySent, mergedReceipts(healthy))
	h := Herald{
		Peak: *peaks,
		Publish: Publish{
			Events:     len(load.Sent),
			Accepted:   accepted,
			Calls:      load.Calls,
			Errors:     load.CallErrors,
			FirstError: load.FirstError,
			NoMatch:    load.NoMatch,
			Duplicates: load.Duplicates,
			Wall:       load.End.Sub(load.Start),
			Rate:       perSecond(accepted, load.End.Sub(load.Start)),
			Latency:    Summarize(load.Latency),
			MaxLag:     load.MaxLag,
		},
		Delivery: d,
		Sink:     sumStats(healthy),
		Usage:    usage,
	}
	if !d.Last.IsZero() {
		h.DeliveryRate = perSecond(d.Delivered, d.Last.Sub(load.Start))
		if cfg.Outage > 0 {
			h.Recovered = d.Last.Sub(downTil)
		}
	}
	if len(bad) > 0 {
		h.Bad = &BadSinks{
			Sinks:    len(bad),
			Mode:     cfg.BadSinkMode,
			Expected: badAccepted,
			Delivery: Account(badSent, mergedReceipts(bad)),
			Sink:     sumStats(bad),
		}
		for _, fs := range fl.sinks {
			if fs.bad {
				h.Bad.Requests += int(fs.requests())
			}
		}
	}
	res.Herald = h
	return nil
}

// warmUp publishes one event and waits for the sink to accept it. A node
// other than the one the subscription was created through sees it at its
// next catalog reload: until then the event matches nothing, and warmUp
// publishes another.
func warmUp(ctx context.Context, client heraldv1.PublishServiceClient, sink *Sink, source, runID string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	want := sink.Delivered() + 1
	for try := 0; ; try++ {
		id := runID + "-warmup"
		if try > 0 {
			id += fmt.Sprint("-", try)
		}
		ev := &cloudeventsv1.CloudEvent{
			Id: id, Source: source, SpecVersion: "1.0", Type: eventType,
			Data: &cloudeventsv1.CloudEvent_TextData{TextData: eventData(-1)},
		}
		resp, err := client.Publish(ctx, &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{ev}})
		if err != nil {
			return fmt.Errorf("warm-up publish: %w", err)
		}
		r := resp.GetResults()
		if len(r) == 1 && len(r[0].GetDeliveryIds()) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("warm-up publish matched no subscription within a minute (results %v)", r)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := sink.Await(ctx, want); err != nil {
		return fmt.Errorf("warm-up event not delivered within a minute: %w", err)
	}
	return nil
}

// runBaseline drives fresh sinks (as many as the Herald phase had, with
// its sink latency, none bad) with a plain signing HTTP client: one sender
// per publisher, or with several sinks enough senders to keep each sink
// as busy as Herald's starting limit would (8 per sink).
func runBaseline(ctx context.Context, cfg Config, events int, runID string) (*BaselineResult, error) {
	latency, _ := ParseLatency(cfg.SinkLatency)
	fl, err := listenFleet(cfg.SinkAddr, cfg.Sinks)
	if err != nil {
		return nil, fmt.Errorf("baseline sinks: %w", err)
	}
	defer fl.close()
	var sinks []*Sink
	var urls, secrets []string
	for i := range cfg.Sinks {
		secret := signing.NewSecret()
		sink, err := NewSink(secret, 0)
		if err != nil {
			return nil, err
		}
		fl.serve(i, sink, latency, "")
		sinks = append(sinks, sink)
		urls, secrets = append(urls, fl.URL(i)), append(secrets, secret)
	}
	workers := cfg.Publishers
	if cfg.Sinks > 1 {
		workers = max(workers, 8*cfg.Sinks)
	}
	// Give back what an in-process node left behind, so that the peak RSS
	// measured is closer to the baseline's own.
	debug.FreeOSMemory()
	m := startMeter()
	run, err := Baseline(ctx, BaselineConfig{
		URLs:    urls,
		Secrets: secrets,
		Events:  events,
		Workers: workers,
		Prefix:  runID + "-base-",
		Source:  eventSource + "/" + runID,
	})
	if err != nil {
		return nil, err
	}
	usage := m.stop("this process: baseline HTTP client and sinks")
	d := Account(run.Sent, mergedReceipts(sinks))
	return &BaselineResult{
		Events:   len(run.Sent),
		Workers:  workers,
		Errors:   run.Errors,
		Delivery: d,
		Sink:     sumStats(sinks),
		Rate:     perSecond(d.Delivered, run.End.Sub(run.Start)),
		Latency:  Summarize(run.Latency),
		Usage:    usage,
	}, nil
}

// newRunID returns a short random id that keeps this run's events and
// subscription apart from any other's.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "bench" + hex.EncodeToString(b)
}

// writeAllocs writes the process's allocation profile to path.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
