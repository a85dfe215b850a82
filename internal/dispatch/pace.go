package dispatch

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// pacer slows hand-offs to Temporal while this process is short of CPU and
// still making first attempts. It is for an embedded Temporal server
// (Config.PaceHandoffs): there, every workflow start costs the process
// CPU (about 16 ms per delivery workflow measured here), and a burst of
// failures would take it from the deliveries that succeed first time. The
// hand-off queue holds the failures meanwhile; they start at full speed as
// soon as the first attempts leave CPU to spare.
type pacer struct {
	limiter  *rate.Limiter
	attempts atomic.Int64 // first attempts since the last check
}

const (
	// paceInterval is how often the pacer looks at the scheduler.
	paceInterval = 250 * time.Millisecond
	// The process is short of CPU when more than paceSaturated of its
	// goroutines waited longer than paceWait to run. Measured on two
	// cores: 4-24% with 64 saturating publishers, under 1% at 1,000
	// events/s.
	paceWait      = time.Millisecond
	paceSaturated = 0.02
	// paceBusyRate is how many hand-offs may start per second while busy.
	paceBusyRate = 2
)

func newPacer() *pacer {
	// Paced from the start: the first look at the scheduler comes only
	// after paceInterval.
	return &pacer{limiter: rate.NewLimiter(paceBusyRate, 1)}
}

// wait returns when the next hand-off may start, or when ctx is done.
func (p *pacer) wait(ctx context.Context) {
	_ = p.limiter.Wait(ctx)
}

// run adjusts the pace every paceInterval until ctx is done, then lifts it.
func (p *pacer) run(ctx context.Context) {
	defer p.limiter.SetLimit(rate.Inf)
	sample := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	var prev []uint64
	tick := time.NewTicker(paceInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
			return // not this runtime: never pace
		}
		h := sample[0].Value.Float64Histogram()
		busy := p.attempts.Swap(0) > 0 && saturated(prev, h)
		prev = append(prev[:0], h.Counts...)
		if busy {
			p.limiter.SetLimit(paceBusyRate)
		} else {
			p.limiter.SetLimit(rate.Inf)
		}
	}
}

// saturated reports whether more than paceSaturated of the scheduling
// latencies h recorded since prev (an earlier h.Counts) exceed paceWait.
func saturated(prev []uint64, h *metrics.Float64Histogram) bool {
	if len(prev) != len(h.Counts) {
		return false
	}
	var total, slow uint64
	for i, c := range h.Counts {
		d := c - prev[i]
		total += d
		if h.Buckets[i] >= paceWait.Seconds() { // Buckets[i] is bucket i's lower bound
			slow += d
		}
	}
	return total > 0 && float64(slow) > paceSaturated*float64(total)
}
