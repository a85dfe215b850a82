// Package metrics defines Herald's Prometheus metrics and serves them.
package metrics

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds Herald's metrics and the Go runtime's. It is Herald's own
// (not the default registry), so that embedded components cannot clash
// with it.
var Registry = prometheus.NewRegistry()

var (
	// EventsPublished counts published events by status (accepted,
	// duplicate).
	EventsPublished = newCounterVec("herald_events_published_total", "Events published, by status.", "status")
	// EventsRejected counts events refused as invalid.
	EventsRejected = newCounter("herald_events_rejected_total", "Publish calls refused as invalid.")
	// DeliveriesCreated counts deliveries created by publishing.
	DeliveriesCreated = newCounter("herald_deliveries_created_total", "Deliveries created, one per matching subscription.")
	// CommitSeconds times the group-committed publish transactions.
	CommitSeconds = newHistogram("herald_publish_commit_seconds", "Duration of a group-committed publish transaction.",
		prometheus.ExponentialBuckets(0.0005, 2, 14))
	// CommitEvents counts events per group commit.
	CommitEvents = newHistogram("herald_publish_commit_events", "Events per group-committed transaction.",
		prometheus.ExponentialBuckets(1, 2, 12))
	// Attempts counts delivery attempts by outcome (delivered,
	// retryable, permanent, gone).
	Attempts = newCounterVec("herald_attempts_total", "Delivery attempts, by outcome.", "outcome")
	// AttemptSeconds times delivery requests.
	AttemptSeconds = newHistogram("herald_attempt_seconds", "Duration of a delivery request.",
		prometheus.ExponentialBuckets(0.001, 2, 15))
	// Handoffs counts failed first attempts handed to their workflow, by
	// result (ok, error).
	Handoffs = newCounterVec("herald_handoffs_total", "Failed deliveries handed to their Temporal workflow, by result.", "result")
	// RetriesWoken counts retrying deliveries whose backoff was ended
	// because their sink answered again.
	RetriesWoken = newCounter("herald_retries_woken_total", "Retrying deliveries woken early because their sink answered again.")
	// TokenLeases counts leases of rate tokens from the store (limits
	// kept across nodes), by result: taken (some tokens), empty (the
	// bucket had none), error.
	TokenLeases = newCounterVec("herald_token_leases_total", "Leases of rate tokens from the store for limits kept across nodes, by result.", "result")
	// LeaseRenewals counts the dispatcher's lease renewals, one statement
	// each, by result (ok, error); ClaimsLost counts the deliveries a
	// renewal found no longer this node's (another node claimed them
	// after their lease ran out), which the node then neither sends nor
	// records over the new holder; ClaimsReleased the deliveries a node
	// put back as it started, held when it last stopped.
	LeaseRenewals  = newCounterVec("herald_lease_renewals_total", "Renewals of the leases of the deliveries a node holds, by result.", "result")
	ClaimsLost     = newCounter("herald_claims_lost_total", "Deliveries a lease renewal found claimed by another node.")
	ClaimsReleased = newCounter("herald_claims_released_total", "Deliveries a node put back as it started, held by its node ID when it last stopped.")
	// Panics counts API handlers that panicked (each answered INTERNAL or
	// 500; the node lives on).
	Panics = newCounter("herald_api_panics_total", "API handlers that panicked and were recovered.")
	// DeadLetters counts deliveries dead-lettered.
	DeadLetters = newCounter("herald_dead_letters_total", "Deliveries dead-lettered.")
	// AuthRefused counts API calls refused by authentication or
	// authorisation, by reason (unauthenticated, permission).
	AuthRefused = newCounterVec("herald_api_refused_total", "API calls refused, by reason (unauthenticated, permission).", "reason")
	// PublishLimited counts publish calls refused because their key was
	// over its publish rate.
	PublishLimited = newCounter("herald_publish_rate_limited_total", "Publish calls refused because the key was over its publish rate.")
	// Pruned counts rows retention deleted, by kind (deliveries,
	// attempts, events); RetentionPass is when a retention pass last
	// reached rows too recent to go.
	Pruned        = newCounterVec("herald_pruned_total", "Rows deleted by retention, by kind (deliveries, attempts, events).", "kind")
	RetentionPass = newGauge("herald_retention_pass_completed_timestamp_seconds", "When a retention pass last completed on this node (Unix seconds).")
)

// SchedulerStats is what the node's request scheduler reports.
type SchedulerStats struct {
	InFlight, Queued, Origins, Open int
	// Refused counts the requests refused since the node started, by
	// reason (breaker_open, queue_full, deadline, closed): each was put
	// back in the store.
	Refused map[string]int64
}

// scheduler is the running node's scheduler, read by the gauges below.
var scheduler atomic.Pointer[func() SchedulerStats]

// Scheduler makes the gauges of requests in flight, requests waiting, sink
// origins known and origins cut off by their circuit breaker read stats.
// The last node started in a process is the one reported.
func Scheduler(stats func() SchedulerStats) { scheduler.Store(&stats) }

// SchedulerNow returns the running node's scheduler stats (zero when no
// node runs in this process).
func SchedulerNow() SchedulerStats {
	if f := scheduler.Load(); f != nil {
		return (*f)()
	}
	return SchedulerStats{}
}

func schedulerGauge(name, help string, field func(SchedulerStats) int) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		if f := scheduler.Load(); f != nil {
			return float64(field((*f)()))
		}
		return 0
	})
}

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		schedulerGauge("herald_requests_in_flight", "Webhook requests in flight.", func(s SchedulerStats) int { return s.InFlight }),
		schedulerGauge("herald_requests_waiting", "Webhook requests waiting for their turn.", func(s SchedulerStats) int { return s.Queued }),
		schedulerGauge("herald_sink_origins", "Sink origins the scheduler keeps state for.", func(s SchedulerStats) int { return s.Origins }),
		schedulerGauge("herald_sink_origins_open", "Sink origins cut off by their circuit breaker (open or half-open).", func(s SchedulerStats) int { return s.Open }),
		newOriginCollector(),
		refusedCollector{prometheus.NewDesc("herald_requests_refused_total",
			"Webhook requests the scheduler refused, by reason (breaker_open, queue_full, deadline, closed); each delivery was put back in the store.",
			[]string{"reason"}, nil)},
	)
}

// refusedCollector reports the scheduler's refusals.
type refusedCollector struct{ desc *prometheus.Desc }

func (c refusedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c refusedCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range SchedulerNow().Refused {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), reason)
	}
}

// Handler serves the metrics in the Prometheus exposition format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

func newCounter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	Registry.MustRegister(c)
	return c
}

func newCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func newGauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	Registry.MustRegister(g)
	return g
}

func newHistogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	Registry.MustRegister(h)
	return h
}
