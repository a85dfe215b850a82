package retention

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

func TestDefaults_AreConfigs(t *testing.T) {
	p := New(nil, Config{})
	if p.cfg.Interval != config.DefaultPruneInterval || p.cfg.Batch != config.DefaultPruneBatch {
		t.Errorf("zero Config takes %+v, not package config's defaults", p.cfg)
	}
}

// TestPass_PrunesWhatRetentionLetsGoAndOnlyWithTheLease: a pass deletes
// deliveries delivered (dead) longer ago than their retention, their
// attempts and events, in batches; a node without the lease prunes
// nothing.
func TestPass_PrunesWhatRetentionLetsGoAndOnlyWithTheLease(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now()
	// Oldest first, as IDs are made.
	ages := []struct {
		state store.DeliveryState
		age   time.Duration
		goes  bool
	}{
		{store.DeliveryRetrying, 40 * 24 * time.Hour, false},
		{store.DeliveryHeld, 31 * 24 * time.Hour, true}, // held: as long as dead
		{store.DeliveryDead, 31 * 24 * time.Hour, true},
		{store.DeliveryDelivered, 8 * 24 * time.Hour, true},
		{store.DeliveryDead, 8 * 24 * time.Hour, false}, // dead: 30 days
		{store.DeliveryHeld, 8 * 24 * time.Hour, false},
		{store.DeliveryDelivered, 6 * 24 * time.Hour, false},
	}
	for i, a := range ages {
		at := now.Add(-a.age)
		_, err := s.EventInsertBatch(ctx, []store.EventInsertParams{{
			Event:      store.Event{Source: "/r", ID: fmt.Sprint(i), Type: "t", Payload: []byte("x"), CreatedAt: at},
			Deliveries: []store.Delivery{{ID: fmt.Sprintf("dlv_%03d", i), SubscriptionID: "sub_1", State: a.state, NextAt: at, CreatedAt: at, UpdatedAt: at}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Another node holds the lease: nothing goes.
	if ok, err := s.LeaseAcquire(ctx, LeaseName, "other", now, now.Add(time.Hour)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	cfg := Config{Delivered: config.DefaultRetentionDelivered, Dead: config.DefaultRetentionDead, Batch: 1, Holder: "me"}
	if err := New(s, cfg).Pass(ctx); err != nil {
		t.Fatal(err)
	}
	ds, _ := s.DeliveryList(ctx, store.DeliveryListParams{Limit: 10})
	if len(ds) != len(ages) {
		t.Fatalf("without the lease, %d of %d deliveries left", len(ds), len(ages))
	}

	// Once the lease is free, a pass in batches of one prunes them.
	cfg.Holder = "other"
	if err := New(s, cfg).Pass(ctx); err != nil {
		t.Fatal(err)
	}
	for i, a := range ages {
		_, err := s.DeliveryGet(ctx, fmt.Sprintf("dlv_%03d", i))
		if gone := err != nil; gone != a.goes {
			t.Errorf("%s %s old: gone %v, want %v", a.state, a.age, gone, a.goes)
		}
	}
}
