package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

// A result batch's statements are planned for their arguments every time,
// never with a generic plan made while the table was small (customPlansSQL).
// PostgreSQL reports per session how each prepared statement was planned,
// so the store gets a pool of one connection and the test asks it.
func TestResultBatchesNeverUseGenericPlans(t *testing.T) {
	dsn := os.Getenv("HERALD_TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip("PostgreSQL is unreachable: ", err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "herald_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Far more batches than the five custom plans after which PostgreSQL
	// may settle on a generic one.
	const batches = 12
	now := time.Now()
	for i := range batches {
		id := fmt.Sprintf("dlv_%02d", i)
		_, err := s.EventInsertBatch(ctx, []store.EventInsertParams{{
			Event:      store.Event{Source: "/plans", ID: id, Type: "t", Payload: []byte("{}"), CreatedAt: now},
			Deliveries: []store.Delivery{{ID: id, SubscriptionID: "sub_1", State: store.DeliveryInFlight, NextAt: now, LeaseUntil: now.Add(time.Minute)}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		err = s.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{{ID: id, State: store.DeliveryDelivered, Attempts: 1, LastStatus: 204,
			ExpectState: store.DeliveryInFlight, Attempt: &store.Attempt{Number: 1, StartedAt: now, StatusCode: 204}}})
		if err != nil {
			t.Fatal(err)
		}
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, stmt := range []string{deliveriesExistingSQL, deliveryUpdateManySQL, attemptUpsertManySQL} {
		var generic, custom int64
		err := conn.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`, stmt).Scan(&generic, &custom)
		if err != nil {
			t.Fatalf("%.40q...: %v", stmt, err)
		}
		if generic != 0 || custom != batches {
			t.Errorf("%.40q... was planned generically %d times and for its arguments %d times; want 0 and %d", stmt, generic, custom, batches)
		}
	}
}
