package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"golang.org/x/time/rate"
)

// Waker ends the backoff of every retrying delivery to a sink host that
// answers again, so that a recovered sink drains in seconds rather than
// in the rest of each delivery's wait. It finds them by search attribute
// (HeraldSinkHost, HeraldDeliveryState retrying) and sends each
// WakeSignal, at most Rate signals a second: a release of waits, paced,
// not a retry storm (the attempts then wait their turn in the node's
// scheduler, within the sink's limits). Safe for concurrent use.
type Waker struct {
	Client    client.Client
	Namespace string
	// Rate is signals per second (default 100).
	Rate float64
	// Every is how soon one host may be woken again (default 10s): a
	// flaky sink does not list its workflows on every success.
	Every  time.Duration
	Logger *slog.Logger

	once    sync.Once
	limiter *rate.Limiter
	mu      sync.Mutex
	last    map[string]time.Time // host -> last wake
}

func (w *Waker) init() {
	w.once.Do(func() {
		r := w.Rate
		if r <= 0 {
			r = 100
		}
		if w.Every <= 0 {
			w.Every = 10 * time.Second
		}
		if w.Logger == nil {
			w.Logger = slog.New(slog.DiscardHandler)
		}
		w.limiter = rate.NewLimiter(rate.Limit(r), 1)
		w.last = map[string]time.Time{}
	})
}

// Wake wakes the retrying deliveries to host (a HeraldSinkHost value),
// unless it did so less than Every ago. It returns how many it signalled.
func (w *Waker) Wake(ctx context.Context, host string) (int, error) {
	w.init()
	if host == "" {
		return 0, nil
	}
	w.mu.Lock()
	if t, ok := w.last[host]; ok && time.Since(t) < w.Every {
		w.mu.Unlock()
		return 0, nil
	}
	w.last[host] = time.Now()
	if len(w.last) > 10000 {
		for h, t := range w.last {
			if time.Since(t) > w.Every {
				delete(w.last, h)
			}
		}
	}
	w.mu.Unlock()

	query := fmt.Sprintf("%s = '%s' AND %s = '%s' AND ExecutionStatus = 'Running'",
		AttrSinkHost.GetName(), escapeQuery(host), AttrDeliveryState.GetName(), StateRetrying)
	woken := 0
	var token []byte
	for {
		resp, err := w.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: w.Namespace, Query: query, PageSize: 500, NextPageToken: token,
		})
		if err != nil {
			return woken, fmt.Errorf("list retrying deliveries of %s: %w", host, err)
		}
		for _, ex := range resp.GetExecutions() {
			if err := w.limiter.Wait(ctx); err != nil {
				return woken, err
			}
			id := ex.GetExecution().GetWorkflowId()
			if err := w.Client.SignalWorkflow(ctx, id, "", WakeSignal, nil); err != nil {
				// It may have ended since the list: that is fine.
				w.Logger.Debug("wake delivery", "workflow", id, "err", err)
				continue
			}
			woken++
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return woken, nil
		}
	}
}

// escapeQuery escapes a value for a single-quoted visibility query string.
func escapeQuery(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}
