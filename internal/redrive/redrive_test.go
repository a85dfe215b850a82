package redrive_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/redrive"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/workflows"
)

// fakeWorkflows records redrives, and fails them while fail is set.
type fakeWorkflows struct {
	mu   sync.Mutex
	got  []workflows.DeliveryInput
	fail error
}

func (f *fakeWorkflows) Redrive(_ context.Context, in workflows.DeliveryInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.got = append(f.got, in)
	return nil
}

// setup stores a subscription in state and deliveries in the given states,
// created one minute apart (the first the oldest).
func setup(t *testing.T, state store.SubscriptionState, states ...store.DeliveryState) (*sqlite.Store, []*store.Delivery) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now()
	if err := s.SubscriptionInsert(ctx, &store.Subscription{ID: "sub_1", Sink: "https://hooks.example.com:8443/h", Protocol: "HTTP",
		State: state, Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	var out []*store.Delivery
	for i, st := range states {
		at := now.Add(time.Duration(i-len(states)) * time.Minute)
		id := fmt.Sprintf("dlv_%02d", i)
		if _, err := s.EventInsertBatch(ctx, []store.EventInsertParams{{
			Event:      store.Event{Source: "/s", ID: id, Type: "t", Payload: []byte{}, CreatedAt: at},
			Deliveries: []store.Delivery{{ID: id, SubscriptionID: "sub_1", State: store.DeliveryInFlight, NextAt: at, LeaseUntil: at.Add(time.Hour)}},
		}}); err != nil {
			t.Fatal(err)
		}
		if st != store.DeliveryInFlight {
			u := store.DeliveryUpdate{ID: id, State: st, Attempts: 3, LastStatus: 500}
			if err := s.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{u}); err != nil {
				t.Fatal(err)
			}
		}
		d, err := s.DeliveryGet(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return s, out
}

func TestOne_RedrivesADeadDeliveryThroughItsWorkflow(t *testing.T) {
	s, ds := setup(t, store.SubscriptionActive, store.DeliveryDead)
	w := &fakeWorkflows{}
	r := &redrive.Redriver{Store: s, Workflows: w}
	if err := r.One(context.Background(), ds[0]); err != nil {
		t.Fatal(err)
	}
	d, _ := s.DeliveryGet(context.Background(), ds[0].ID)
	if d.State != store.DeliveryRetrying {
		t.Errorf("state %s, want retrying", d.State)
	}
	if len(w.got) != 1 || w.got[0].DeliveryID != ds[0].ID || w.got[0].SinkHost != "hooks.example.com:8443" || w.got[0].TotalAttempts != 3 {
		t.Errorf("workflow input %+v", w.got)
	}
}

func TestOne_Refuses(t *testing.T) {
	ctx := context.Background()
	s, ds := setup(t, store.SubscriptionActive, store.DeliveryDelivered, store.DeliveryDead)
	w := &fakeWorkflows{}
	r := &redrive.Redriver{Store: s, Workflows: w}
	if err := r.One(ctx, ds[0]); !errors.Is(err, lifecycle.ErrIllegal) {
		t.Errorf("redrive of a delivered delivery: %v, want ErrIllegal", err)
	}
	w.fail = errors.New("temporal down")
	if err := r.One(ctx, ds[1]); !errors.Is(err, redrive.ErrUnavailable) {
		t.Errorf("with Temporal down: %v, want ErrUnavailable", err)
	}
	if d, _ := s.DeliveryGet(ctx, ds[1].ID); d.State != store.DeliveryDead {
		t.Errorf("after a failed redrive the delivery is %s, want still dead", d.State)
	}
	disabled, dds := setup(t, store.SubscriptionDisabled, store.DeliveryDead)
	r = &redrive.Redriver{Store: disabled, Workflows: &fakeWorkflows{}}
	if err := r.One(ctx, dds[0]); !errors.Is(err, redrive.ErrInactive) {
		t.Errorf("redrive under a disabled subscription: %v, want ErrInactive", err)
	}
}

func TestDeadLetters_RedrivesOnlyDeadOnesSinceATime(t *testing.T) {
	s, ds := setup(t, store.SubscriptionActive, store.DeliveryDead, store.DeliveryDead, store.DeliveryDelivered, store.DeliveryDead)
	w := &fakeWorkflows{}
	r := &redrive.Redriver{Store: s, Workflows: w}
	// Since the second delivery: ds[1] and ds[3] are dead, ds[2] delivered.
	n, err := r.DeadLetters(context.Background(), "sub_1", ds[1].CreatedAt, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || len(w.got) != 2 {
		t.Fatalf("redrove %d (%v), want 2", n, w.got)
	}
	if d, _ := s.DeliveryGet(context.Background(), ds[0].ID); d.State != store.DeliveryDead {
		t.Errorf("the dead letter before the start time is %s", d.State)
	}
	if _, err := r.DeadLetters(context.Background(), "sub_none", time.Time{}, 10); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown subscription: %v", err)
	}
}
