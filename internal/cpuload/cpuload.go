// Package cpuload tells whether this process is short of CPU: a Monitor
// samples the Go scheduler's latencies, and reports the process saturated
// while many runnable goroutines wait long for a CPU, and the CPU time
// the process used, and reports it busy while it uses nearly all its
// CPUs.
package cpuload

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// Interval is how often a Monitor samples.
	Interval = 250 * time.Millisecond
	// The process is saturated when more than saturatedShare of the
	// goroutines that were scheduled waited longer than slowWait to run.
	// Measured on two cores: 4-24% with 64 saturating publishers, under 1%
	// at 1,000 events/s.
	slowWait       = time.Millisecond
	saturatedShare = 0.02
	// The process is busy when it used more than busyShare of the CPU
	// time its GOMAXPROCS CPUs offer.
	busyShare = 0.85
)

// Monitor samples the scheduler until its context ends. The zero value is
// not saturated; start it with Run. Safe for concurrent use.
type Monitor struct {
	saturated atomic.Bool
	busy      atomic.Bool
}

// Saturated reports whether, at the last sample, goroutines waited long
// for a CPU. Bursts of wake-ups count too: it is quick to say yes.
func (m *Monitor) Saturated() bool { return m != nil && m.saturated.Load() }

// Busy reports whether, over the last interval, the process used nearly
// all the CPU time it may: more work in parallel would wait for a CPU.
func (m *Monitor) Busy() bool { return m != nil && m.busy.Load() }

// Run samples every Interval until ctx is done, then reports not
// saturated.
func (m *Monitor) Run(ctx context.Context) {
	defer m.saturated.Store(false)
	defer m.busy.Store(false)
	sample := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	var prev []uint64
	lastCPU, lastWall := cpuTime(), time.Now()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cpu, wall := cpuTime(), time.Now()
		if cpu > 0 {
			offered := wall.Sub(lastWall).Seconds() * float64(runtime.GOMAXPROCS(0))
			m.busy.Store(offered > 0 && (cpu-lastCPU).Seconds() > busyShare*offered)
		}
		lastCPU, lastWall = cpu, wall
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
			continue // not this runtime: never saturated
		}
		h := sample[0].Value.Float64Histogram()
		m.saturated.Store(saturated(prev, h))
		prev = append(prev[:0], h.Counts...)
	}
}

// saturated reports whether more than saturatedShare of the scheduling
// latencies h recorded since prev (an earlier h.Counts) exceed slowWait.
func saturated(prev []uint64, h *metrics.Float64Histogram) bool {
	if len(prev) != len(h.Counts) {
		return false
	}
	var total, slow uint64
	for i, c := range h.Counts {
		d := c - prev[i]
		total += d
		if h.Buckets[i] >= slowWait.Seconds() { // Buckets[i] is bucket i's lower bound
			slow += d
		}
	}
	return total > 0 && float64(slow) > saturatedShare*float64(total)
}

// cpuTime is the user and system CPU time this process has used, or 0 if
// the system does not say.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
