package postgres

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/storetest"
)

// TestMigrationsKeepOldData opens a schema-1 database: attempts made
// before keep their order and fields, the first one moved into its
// delivery's row (migration 2), and a delivery without attempts still has
// none.
func TestMigrationsKeepOldData(t *testing.T) {
	ctx := context.Background()
	_, dsn := newTestSchema(t, nil)
	init, err := os.ReadFile("migrations/001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		migrationsTableSQL,
		string(init),
		`INSERT INTO schema_migrations (version, name) VALUES (1, '001_init.sql')`,
		`INSERT INTO events (source, id, type, created_at, payload) VALUES ('/old', 'e1', 't', now(), '')`,
		`INSERT INTO deliveries (id, subscription_id, event_seq, position, state, attempts, last_status, last_error, next_at, lease_until, created_at, updated_at)
		 SELECT v.id, 'sub_1', seq, v.pos, v.state, 1, 200, '', now(), '0001-01-01 00:00:00+00', now(), now()
		 FROM events, (VALUES ('dlv_b', 0, 'delivered'), ('dlv_a', 1, 'dead')) AS v (id, pos, state)`,
		`INSERT INTO attempts (delivery_id, number, started_at, status_code, latency, error, response_body)
		 VALUES ('dlv_a', 2, '2026-01-01 00:00:02+00', 503, 7, 'busy', 'ok'), ('dlv_a', 1, '2026-01-01 00:00:01+00', 500, 5, 'boom', 'no')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	conn.Close(ctx)

	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM attempts WHERE number = 1`).Scan(&left); err != nil || left != 0 {
		t.Errorf("first attempts left in attempts: %d, %v; want 0", left, err)
	}
	as, err := s.AttemptList(ctx, "dlv_a")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []store.Attempt{
		{DeliveryID: "dlv_a", Number: 1, StartedAt: base.Add(time.Second), StatusCode: 500, Latency: 5, Error: "boom", ResponseBody: []byte("no")},
		{DeliveryID: "dlv_a", Number: 2, StartedAt: base.Add(2 * time.Second), StatusCode: 503, Latency: 7, Error: "busy", ResponseBody: []byte("ok")},
	}
	storetest.CheckAttempts(t, as, want)
	if as, err := s.AttemptList(ctx, "dlv_b"); err != nil || len(as) != 0 {
		t.Errorf("AttemptList(no attempts) = %v, %v; want none", as, err)
	}
}
