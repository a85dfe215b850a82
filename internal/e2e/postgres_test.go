package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// postgresServer is the URL of the local PostgreSQL server's default
// database (trust authentication); HERALD_TEST_POSTGRES_DSN overrides it.
func postgresServer() string {
	if dsn := os.Getenv("HERALD_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/postgres"
}

// postgresStore creates a database of its own on the local PostgreSQL
// server (postgresServer) and returns its URL; it is dropped when the test
// ends. Without a server the test is skipped, or fails when CI is "true".
func postgresStore(t *testing.T) string {
	t.Helper()
	dsn := postgresServer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s: %v", dsn, err)
		}
		t.Skipf("PostgreSQL at %s is unreachable: %v", dsn, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "herald_e2e_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(ctx)
	})
	cfg := conn.Config()
	return "postgres://" + cfg.User + "@" + cfg.Host + ":" + strconv.Itoa(int(cfg.Port)) + "/" + name
}

// TestPostgres_PublishRetryAndDeliver runs the main path on PostgreSQL, the
// production store: publish, a failed first attempt, a retry by the
// workflow, delivery.
func TestPostgres_PublishRetryAndDeliver(t *testing.T) {
	n := startNode(t, nodeConfig(t, postgresStore(t)))
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusBadGateway, nil))
	createSub(t, n, rcv.URL)
	res := publish(t, n, newEvent("evt-pg"), newEvent("evt-pg"))
	if res[1].GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE {
		t.Errorf("second copy = %v, want DUPLICATE", res[1].GetStatus())
	}
	d := waitDeliveryState(t, n, res[0].GetDeliveryIds()[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if d.GetAttempts() != 2 || len(rcv.Requests()) != 2 {
		t.Errorf("attempts = %d, requests = %d; want 2 and 2", d.GetAttempts(), len(rcv.Requests()))
	}
}
