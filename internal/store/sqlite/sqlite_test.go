package sqlite_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/internal/store/storetest"
)

func open(tb testing.TB) store.Store {
	tb.Helper()
	return openAt(tb, filepath.Join(tb.TempDir(), "herald.db"))
}

func openAt(tb testing.TB, path string) store.Store {
	tb.Helper()
	s, err := sqlite.Open(tb.Context(), path)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, open)
}

// TestMigrationKeepsDuplicateDeliveryIDs opens a database made by the
// first schema: after the later migrations, a duplicate of an event stored
// then still reports that event's deliveries, in order.
// TestMigrationsKeepOldData opens a schema-1 database: a duplicate event
// still reports its deliveries in order (migration 2), and attempts made
// before keep their order and fields, the first one moved into its
// delivery's row (migration 3).
func TestMigrationsKeepOldData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	init, err := os.ReadFile("migrations/001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
		string(init),
		`INSERT INTO schema_migrations VALUES (1, '001_init.sql', 0)`,
		`INSERT INTO events (seq, source, id, type, created_at, payload) VALUES (7, '/old', 'e1', 't', 1, x'')`,
		`INSERT INTO deliveries (id, subscription_id, event_seq, state, attempts, last_status, last_error, next_at, lease_until, created_at, updated_at)
		 VALUES ('dlv_b', 'sub_1', 7, 'delivered', 1, 200, '', 0, 0, 1, 1), ('dlv_a', 'sub_2', 7, 'dead', 8, 500, '', 0, 0, 1, 1)`,
		`INSERT INTO attempts (delivery_id, number, started_at, status_code, latency, error, response_body)
		 VALUES ('dlv_a', 2, 2000, 503, 7, 'busy', x'6f6b'), ('dlv_a', 1, 1000, 500, 5, 'boom', x'6e6f')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	db.Close()

	s := openAt(t, path)
	res, err := s.EventInsertBatch(t.Context(), []store.EventInsertParams{{
		Event:      store.Event{Source: "/old", ID: "e1", Type: "t"},
		Deliveries: []store.Delivery{{ID: "dlv_new", SubscriptionID: "sub_1", State: store.DeliveryPending}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || strings.Join(res[0].DeliveryIDs, ",") != "dlv_b,dlv_a" {
		t.Errorf("result = %+v, want a duplicate with [dlv_b dlv_a]", res[0])
	}
	dead, err := s.DeliveryList(t.Context(), store.DeliveryListParams{State: store.DeliveryDead, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != "dlv_a" {
		t.Errorf("dead deliveries = %v, want [dlv_a]", dead)
	}

	as, err := s.AttemptList(t.Context(), "dlv_a")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Attempt{
		{DeliveryID: "dlv_a", Number: 1, StartedAt: time.UnixMilli(1000), StatusCode: 500, Latency: 5, Error: "boom", ResponseBody: []byte("no")},
		{DeliveryID: "dlv_a", Number: 2, StartedAt: time.UnixMilli(2000), StatusCode: 503, Latency: 7, Error: "busy", ResponseBody: []byte("ok")},
	}
	storetest.CheckAttempts(t, as, want)
	if as, err := s.AttemptList(t.Context(), "dlv_b"); err != nil || len(as) != 0 {
		t.Errorf("AttemptList(no attempts) = %v, %v; want none", as, err)
	}

	// Migration 004 rebuilt events: deliveries' foreign key still points
	// at it, and is still enforced.
	db, err = sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var parent string
	if err := db.QueryRow(`SELECT "table" FROM pragma_foreign_key_list('deliveries')`).Scan(&parent); err != nil || parent != "events" {
		t.Errorf("deliveries' foreign key refers to %q (%v), want events", parent, err)
	}
	if _, err := db.Exec(`INSERT INTO deliveries (id, subscription_id, event_seq, state, attempts, last_status, last_error, next_at, lease_until, created_at, updated_at)
		VALUES ('dlv_orphan', 'sub_1', 999, 'pending', 0, 0, '', 0, 0, 1, 1)`); err == nil {
		t.Error("a delivery of no event was stored: the foreign key is gone")
	}
}

// TestConcurrentWritesFailAlone: writes that queue together share a
// transaction; one that fails must undo only itself.
func TestConcurrentWritesFailAlone(t *testing.T) {
	s := open(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			if i%2 == 1 {
				errs[i] = s.DeliveryUpdateBatch(t.Context(), []store.DeliveryUpdate{
					{ID: "dlv_missing", State: store.DeliveryDelivered},
				})
				return
			}
			_, errs[i] = s.EventInsertBatch(t.Context(), []store.EventInsertParams{{
				Event:      store.Event{Source: "/concurrent", ID: strconv.Itoa(i), Type: "t"},
				Deliveries: []store.Delivery{{ID: "dlv_" + strconv.Itoa(i), SubscriptionID: "sub_1", State: store.DeliveryPending}},
			}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("update of a missing delivery: err = %v, want ErrNotFound", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("insert %d: %v", i, err)
			continue
		}
		if _, err := s.DeliveryGet(t.Context(), "dlv_"+strconv.Itoa(i)); err != nil {
			t.Errorf("delivery of insert %d: %v", i, err)
		}
	}
}
