package postgres

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// A connection's claims that settled on a generic plan while deliveries
// was empty still use the claim index once the table has grown, before
// any ANALYZE: a new database's first minute, the case item 18 of
// docs/benchmarks.md found slow for result batches' lookups. The store
// gets a pool of one connection, autovacuum is off for the test's tables,
// and PostgreSQL's scan counters tell which plan ran
// (pg_stat_force_next_flush needs PostgreSQL 15).
func TestClaimUsesItsIndexOnATableGrownSinceItsPlan(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenTestStore(t, url.Values{"pool_max_conns": {"1"}})
	exec := func(q string) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%.50s: %v", q, err)
		}
	}
	exec(`ALTER TABLE deliveries SET (autovacuum_enabled = false)`)
	exec(`ALTER TABLE events SET (autovacuum_enabled = false)`)
	now := time.Now()
	claim := func() {
		t.Helper()
		if _, err := s.DeliveryClaim(ctx, store.DeliveryClaimParams{Limit: 2048, Now: now, LeaseUntil: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		claim() // past the five custom plans after which PostgreSQL may keep a generic one
	}
	if generic, _ := plans(t, s, deliveryClaimSQL); generic == 0 {
		t.Fatal("the claim never ran on a generic plan: this test checks nothing")
	}

	exec(`INSERT INTO events (source, id, type, created_at, payload) SELECT '/bulk', g::text, 't', now(), '' FROM generate_series(1, 200000) g`)
	exec(`INSERT INTO deliveries (id, subscription_id, event_seq, position, state, attempts, last_status, last_error, next_at, lease_until, created_at, updated_at)
		SELECT 'dlv_' || seq, 'sub_1', seq, 0, 'delivered', 1, 200, '', now(), '0001-01-01', now(), now() FROM events`)
	scans := func() (seq, idx int64) {
		t.Helper()
		exec(`SELECT pg_stat_force_next_flush()`)
		err := s.pool.QueryRow(ctx, `SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relid = 'deliveries'::regclass`).Scan(&seq, &idx)
		if err != nil {
			t.Fatal(err)
		}
		return seq, idx
	}
	seq0, idx0 := scans()
	const claims = 5
	for range claims {
		claim()
	}
	seq1, idx1 := scans()
	if seq1 != seq0 || idx1-idx0 < claims {
		t.Errorf("%d claims on 200,000 deliveries: %d sequential and %d index scans of deliveries, want 0 and at least %d",
			claims, seq1-seq0, idx1-idx0, claims)
	}
}
