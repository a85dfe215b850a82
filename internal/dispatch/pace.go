package dispatch

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/internal/cpuload"
)

// pacer slows hand-offs to Temporal while this process is short of CPU and
// still making first attempts. It is for an embedded Temporal server
// (Config.PaceHandoffs): there, every workflow start costs the process
// CPU (about 16 ms per delivery workflow measured here), and a burst of
// failures would take it from the deliveries that succeed first time. The
// hand-off queue holds the failures meanwhile; they start at full speed as
// soon as the first attempts leave CPU to spare.
type pacer struct {
	cpu      *cpuload.Monitor
	limiter  *rate.Limiter
	attempts atomic.Int64 // first attempts since the last check
}

// paceBusyRate is how many hand-offs may start per second while busy.
const paceBusyRate = 2

func newPacer(cpu *cpuload.Monitor) *pacer {
	// Paced from the start: the first look at the CPU comes only after an
	// interval.
	return &pacer{cpu: cpu, limiter: rate.NewLimiter(paceBusyRate, 1)}
}

// wait returns when the next hand-off may start, or when ctx is done.
func (p *pacer) wait(ctx context.Context) {
	_ = p.limiter.Wait(ctx)
}

// run adjusts the pace every cpuload.Interval until ctx is done, then
// lifts it.
func (p *pacer) run(ctx context.Context) {
	defer p.limiter.SetLimit(rate.Inf)
	tick := time.NewTicker(cpuload.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if p.attempts.Swap(0) > 0 && p.cpu.Saturated() {
			p.limiter.SetLimit(paceBusyRate)
		} else {
			p.limiter.SetLimit(rate.Inf)
		}
	}
}
