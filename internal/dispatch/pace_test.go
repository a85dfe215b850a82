package dispatch

import (
	"context"
	"testing"
	"time"
)

// A paced hand-off never holds up shutdown: once the dispatcher's context
// is done, wait returns at once.
func TestPacerWaitEndsWithContext(t *testing.T) {
	p := newPacer(nil)
	p.limiter.SetLimit(1e-9)     // next token in ~30 years
	p.wait(context.Background()) // the one token in the bucket
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() {
		p.wait(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("wait outlived its context")
	}
}
