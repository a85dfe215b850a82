package metrics

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// OriginStats is one sink origin's state, as the node's scheduler
// reports it.
type OriginStats struct {
	Origin   string // scheme://host:port
	InFlight int    // requests in flight
	Waiting  int    // requests waiting for their turn (and places held for them)
	Limit    int    // the origin's adaptive in-flight limit
	Open     bool   // its circuit breaker is open or half-open
}

// MaxOriginSeries is how many origins have series of their own in the
// per-origin gauges: the busiest, origins whose breaker is open first,
// then by requests in flight and waiting (ties by name). Every other
// origin is summed into one series labelled origin="other" (no limit is
// reported for it). So the gauges have at most MaxOriginSeries+1 series
// each, however many sinks there are.
const MaxOriginSeries = 20

// OtherOrigins is the origin label of the series that sums the origins
// beyond MaxOriginSeries. No origin is named so (origins are URLs).
const OtherOrigins = "other"

// origins is the running node's per-origin source, read at each scrape.
var origins atomic.Pointer[func() []OriginStats]

// Origins makes the per-origin gauges read stats at each scrape. The last
// node started in a process is the one reported.
func Origins(stats func() []OriginStats) { origins.Store(&stats) }

// originCollector reports the per-origin gauges.
type originCollector struct {
	inFlight, waiting, limit, open *prometheus.Desc
}

func newOriginCollector() *originCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"origin"}, nil)
	}
	return &originCollector{
		inFlight: desc("herald_origin_requests_in_flight", "Webhook requests in flight, by sink origin (the busiest origins; the rest summed as origin=\"other\")."),
		waiting:  desc("herald_origin_requests_waiting", "Webhook requests waiting for their turn, by sink origin (the busiest origins; the rest summed as origin=\"other\")."),
		limit:    desc("herald_origin_limit", "A sink origin's adaptive limit of requests in flight (the busiest origins)."),
		open:     desc("herald_origin_breaker_open", "1 while a sink origin's circuit breaker is open or half-open (the busiest origins; origin=\"other\" counts the rest that are)."),
	}
}

func (c *originCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inFlight
	ch <- c.waiting
	ch <- c.limit
	ch <- c.open
}

func (c *originCollector) Collect(ch chan<- prometheus.Metric) {
	f := origins.Load()
	if f == nil {
		return
	}
	top, rest := TopOrigins((*f)(), MaxOriginSeries)
	gauge := func(d *prometheus.Desc, v int, origin string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), origin)
	}
	for _, o := range top {
		gauge(c.inFlight, o.InFlight, o.Origin)
		gauge(c.waiting, o.Waiting, o.Origin)
		gauge(c.limit, o.Limit, o.Origin)
		gauge(c.open, b2i(o.Open), o.Origin)
	}
	gauge(c.inFlight, rest.InFlight, OtherOrigins)
	gauge(c.waiting, rest.Waiting, OtherOrigins)
	gauge(c.open, rest.Open, OtherOrigins)
}

// OriginsSum sums origins' states.
type OriginsSum struct {
	Origins  int // how many
	InFlight int
	Waiting  int
	Open     int // how many have their breaker open or half-open
}

// TopOrigins returns the n busiest of stats (see MaxOriginSeries), and the
// rest summed. It sorts stats in place.
func TopOrigins(stats []OriginStats, n int) (top []OriginStats, rest OriginsSum) {
	slices.SortFunc(stats, func(a, b OriginStats) int {
		if a.Open != b.Open {
			return b2i(b.Open) - b2i(a.Open)
		}
		if c := cmp.Compare(b.InFlight+b.Waiting, a.InFlight+a.Waiting); c != 0 {
			return c
		}
		return cmp.Compare(a.Origin, b.Origin)
	})
	n = min(n, len(stats))
	for _, o := range stats[n:] {
		rest.Origins++
		rest.InFlight += o.InFlight
		rest.Waiting += o.Waiting
		rest.Open += b2i(o.Open)
	}
	return stats[:n], rest
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
