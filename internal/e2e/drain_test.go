package e2e

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// readyz returns /readyz's status and body.
func readyz(t *testing.T, n *testNode) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReady_FollowsWhetherTheNodeCanCommit: a node whose store still
// answers reads but refuses writes (a full disk) reports not ready, so
// load balancers move away, and ready again once a commit succeeds.
func TestReady_FollowsWhetherTheNodeCanCommit(t *testing.T) {
	path := tempStore(t)
	n := startNode(t, nodeConfig(t, path))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	if code, body := readyz(t, n); code != http.StatusOK {
		t.Fatalf("a fresh node: %d %s", code, body)
	}

	// Writes to events fail from now on; reads go on.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER disk_full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	_, err = n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("full-1")}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("publish on a full disk: %v, want Unavailable", err)
	}
	if code, body := readyz(t, n); code != http.StatusServiceUnavailable || !strings.Contains(body, "commit failed") {
		t.Errorf("after a failed commit: %d %q, want 503 saying the last commit failed", code, body)
	}

	if _, err := db.Exec(`DROP TRIGGER disk_full`); err != nil {
		t.Fatal(err)
	}
	publish(t, n, newEvent("full-2"))
	if code, body := readyz(t, n); code != http.StatusOK {
		t.Errorf("after a commit succeeded again: %d %s", code, body)
	}
}

// TestStop_ReportsNotReadyFirstWhileStillServing: during the drain delay
// a stopping node answers /readyz 503 and gRPC health NOT_SERVING, and
// still takes calls.
func TestStop_ReportsNotReadyFirstWhileStillServing(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	cfg.DrainDelay = 10 * time.Second
	n := startNode(t, cfg)
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	stopped := make(chan struct{})
	go func() {
		n.Stop(context.Background())
		close(stopped)
	}()
	heraldtest.Eventually(t, wait, "/readyz 503 while draining", func() bool {
		code, body := readyz(t, n)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	h, err := healthpb.NewHealthClient(n.conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health while draining: %v, %v; want NOT_SERVING", h, err)
	}
	publish(t, n, newEvent("draining-1")) // still served
	<-stopped
}

// TestReady_TemporalAwayLeavesTheSuccessPathUp: Temporal is off the
// success path, so while a node cannot reach it, /readyz stays 200 (with a
// note that the node is degraded), events are stored and delivered, and a
// failed first attempt waits in the store; once Temporal is back, its
// workflow takes it and it is delivered.
func TestReady_TemporalAwayLeavesTheSuccessPathUp(t *testing.T) {
	proxy := newPGProxy(t, temporalAddr)
	cfg := nodeConfig(t, tempStore(t))
	cfg.TemporalAddr = proxy.ln.Addr().String()
	n := startNode(t, cfg)
	good := heraldtest.NewReceiver(t, nil)
	bad := heraldtest.NewReceiver(t, failFirst(1, http.StatusInternalServerError, nil))
	createSub(t, n, good.URL)
	badSub := createSub(t, n, bad.URL)

	proxy.cut()
	heraldtest.Eventually(t, wait, "/readyz notes that Temporal is away", func() bool {
		code, body := readyz(t, n)
		return code == http.StatusOK && strings.Contains(body, "degraded: temporal")
	})
	res := publish(t, n, newEvent("away-1"), newEvent("away-2"))
	good.WaitFor(t, 2, wait)
	bad.WaitFor(t, 2, wait) // both first attempts, the first of them failed
	var failed []string
	heraldtest.Eventually(t, wait, "the good sink's deliveries delivered, one of the bad sink's failed", func() bool {
		failed = nil
		for _, r := range res {
			for _, id := range r.GetDeliveryIds() {
				d, err := n.deliveries.GetDelivery(ctx(t), &heraldv1.GetDeliveryRequest{Id: id})
				if err != nil {
					t.Fatal(err)
				}
				switch d.GetState() {
				case heraldv1.DeliveryState_DELIVERY_STATE_DEAD:
					t.Fatalf("delivery %s of %s is dead", id, d.GetSubscriptionId())
				case heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED:
				default:
					if d.GetSubscriptionId() != badSub.GetId() {
						return false
					}
					failed = append(failed, id)
				}
			}
		}
		return len(failed) == 1
	})

	proxy.restore()
	waitDeliveryState(t, n, failed[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	bad.WaitFor(t, 3, wait)
	if code, body := readyz(t, n); code != http.StatusOK || strings.Contains(body, "degraded") {
		t.Errorf("with Temporal back: %d %q, want ready and not degraded", code, body)
	}
}
