package receiver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/grpc"

	"github.com/heraldhq/herald/clients/cevent"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// CursorStore keeps a Reconciler's place between runs, e.g. a row in the
// subscriber's own database. Load returns "" before the first Save.
type CursorStore interface {
	Load(ctx context.Context) (string, error)
	Save(ctx context.Context, cursor string) error
}

// MemoryCursor is a CursorStore in memory, for tests and for processes
// that reconcile from the start each time.
type MemoryCursor struct {
	mu     sync.Mutex
	cursor string
}

// Load returns the saved cursor.
func (m *MemoryCursor) Load(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cursor, nil
}

// Save keeps cursor.
func (m *MemoryCursor) Save(_ context.Context, cursor string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursor = cursor
	return nil
}

// Reconciler catches a subscriber up with what Herald matched for its
// subscription: it lists the subscription's events after its cursor
// (herald.v1.EventService/ListEvents) and hands the application those it
// has not seen, so that nothing is missed even when the webhook endpoint
// was down for longer than Herald retried. The cursor is saved after each
// page the application took, so a Reconciler stopped at any point goes on
// where it was.
type Reconciler struct {
	// Events is the client of Herald's EventService; a key with the
	// events.read scope (a subscriber's key, bound to its tenant, will do).
	Events heraldv1.EventServiceClient
	// SubscriptionID is the subscription to reconcile.
	SubscriptionID string
	// Cursor keeps the Reconciler's place.
	Cursor CursorStore
	// Seen, if set, reports whether the application has the event already
	// (the same check its webhook handler makes on source and id); those
	// are skipped. Without it every listed event is handed over.
	Seen func(ctx context.Context, source, id string) (bool, error)
	// Handle takes an event the application has not seen. An error stops
	// the pass; the page is taken again next time.
	Handle func(ctx context.Context, e event.Event) error
	// PageSize is how many events one call lists (default 100).
	PageSize int
}

// NewReconciler returns a Reconciler over a connection to Herald.
func NewReconciler(conn grpc.ClientConnInterface, subscriptionID string, cursor CursorStore, handle func(context.Context, event.Event) error) *Reconciler {
	return &Reconciler{Events: heraldv1.NewEventServiceClient(conn), SubscriptionID: subscriptionID, Cursor: cursor, Handle: handle}
}

// Sync makes one pass: it pages through the events after the saved cursor
// until it is caught up, and returns how many it handed to Handle.
func (r *Reconciler) Sync(ctx context.Context) (int, error) {
	cursor, err := r.Cursor.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconciler: load cursor: %w", err)
	}
	size := r.PageSize
	if size <= 0 {
		size = 100
	}
	handed := 0
	for {
		resp, err := r.Events.ListEvents(ctx, &heraldv1.ListEventsRequest{
			SubscriptionId: r.SubscriptionID, AfterCursor: cursor, PageSize: int32(size),
		})
		if err != nil {
			return handed, fmt.Errorf("reconciler: list events: %w", err)
		}
		for _, se := range resp.GetEvents() {
			pe := se.GetEvent()
			if r.Seen != nil {
				seen, err := r.Seen(ctx, pe.GetSource(), pe.GetId())
				if err != nil {
					return handed, err
				}
				if seen {
					continue
				}
			}
			e, err := cevent.FromProto(pe)
			if err != nil {
				return handed, fmt.Errorf("reconciler: event %s/%s: %w", pe.GetSource(), pe.GetId(), err)
			}
			if err := r.Handle(ctx, e); err != nil {
				return handed, err
			}
			handed++
		}
		if len(resp.GetEvents()) == 0 || resp.GetNextCursor() == cursor {
			return handed, nil
		}
		cursor = resp.GetNextCursor()
		if err := r.Cursor.Save(ctx, cursor); err != nil {
			return handed, fmt.Errorf("reconciler: save cursor: %w", err)
		}
		if len(resp.GetEvents()) < size {
			return handed, nil
		}
	}
}

// Run syncs every interval until ctx ends, and returns ctx's error; a
// failed pass is retried at the next interval after onError (nil: ignore)
// sees it.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration, onError func(error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Sync(ctx); err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
