package retention

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/postgres"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

// BenchmarkPublishWhilePruning measures the publish path's group commit
// (batches of 100 events of 1 KiB, one delivery each) on a store holding
// a backlog of old delivered deliveries (HERALD_PRUNE_BACKLOG, default
// 1,000,000), without a pruner ("idle") and while the pruner works
// through the backlog ("pruning"). Compare the two with -count and
// benchstat. The benchmark fails when the backlog ran out during a
// "pruning" run, which would make it compare nothing.
//
// SQLite by default; HERALD_BENCH_POSTGRES_DSN names an empty PostgreSQL
// database to use instead.
func BenchmarkPublishWhilePruning(b *testing.B) {
	s := backlogStore(b)
	b.Run("idle", func(b *testing.B) { benchPublish(b, s, nil) })
	b.Run("pruning", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		counting := &countingPruneStore{Store: s}
		p := New(counting, Config{Delivered: 7 * 24 * time.Hour, Dead: 30 * 24 * time.Hour, Interval: time.Hour, Holder: "bench"})
		done := make(chan error, 1)
		go func() { done <- p.Pass(ctx) }()
		benchPublish(b, s, counting)
		cancel()
		if err := <-done; err == nil {
			b.Fatal("the pruner finished the backlog during the run: make HERALD_PRUNE_BACKLOG larger")
		}
	})
}

// countingPruneStore counts what the pruner deleted.
type countingPruneStore struct {
	store.Store
	deleted atomic.Int64
}

func (c *countingPruneStore) Prune(ctx context.Context, p store.PruneParams) (store.PruneResult, error) {
	res, err := c.Store.Prune(ctx, p)
	c.deleted.Add(int64(res.Deliveries))
	return res, err
}

var benchSeq atomic.Int64

func benchPublish(b *testing.B, s store.Store, pruned *countingPruneStore) {
	const events = 100
	payload := make([]byte, 1<<10)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		now := time.Now()
		params := make([]store.EventInsertParams, events)
		for i := range params {
			params[i] = store.EventInsertParams{
				Event:      store.Event{Source: "/fresh", ID: strconv.FormatInt(benchSeq.Add(1), 10), Type: "com.example.bench", Payload: payload, CreatedAt: now},
				Deliveries: []store.Delivery{{ID: id.New(id.Delivery), SubscriptionID: "sub_bench", State: store.DeliveryPending, NextAt: now}},
			}
		}
		b.StartTimer()
		if _, err := s.EventInsertBatch(b.Context(), params); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "deliveries/s")
	if pruned != nil {
		b.ReportMetric(float64(pruned.deleted.Load())/b.Elapsed().Seconds(), "pruned/s")
	}
}

// backlogStore opens the benchmark's store and fills it with the backlog:
// events 30 days old, each with one delivery delivered then.
func backlogStore(b *testing.B) store.Store {
	b.Helper()
	ctx := context.Background()
	backlog := 1_000_000
	if v := os.Getenv("HERALD_PRUNE_BACKLOG"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("HERALD_PRUNE_BACKLOG: %v", err)
		}
		backlog = n
	}
	var s store.Store
	var err error
	if dsn := os.Getenv("HERALD_BENCH_POSTGRES_DSN"); dsn != "" {
		s, err = postgres.Open(ctx, dsn)
	} else {
		s, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "herald.db"))
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	old := time.Now().Add(-30 * 24 * time.Hour)
	payload := make([]byte, 1<<10)
	const batch = 1000
	start := time.Now()
	for n := 0; n < backlog; n += batch {
		params := make([]store.EventInsertParams, min(batch, backlog-n))
		for i := range params {
			params[i] = store.EventInsertParams{
				Event: store.Event{Source: "/old", ID: fmt.Sprint(n + i), Type: "com.example.bench", Payload: payload, CreatedAt: old},
				Deliveries: []store.Delivery{{ID: id.New(id.Delivery), SubscriptionID: "sub_bench", State: store.DeliveryDelivered,
					Attempts: 1, LastStatus: 200, NextAt: old, CreatedAt: old, UpdatedAt: old}},
			}
		}
		if _, err := s.EventInsertBatch(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("backlog of %d old delivered deliveries stored in %s", backlog, time.Since(start).Round(time.Second))
	return s
}
