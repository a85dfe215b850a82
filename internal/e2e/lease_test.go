package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

// killedHolding starts a node (a process of its own) with env, publishes
// n events through it to a sink that holds every request, kills the node
// with SIGKILL once the first request has arrived (one request at a time
// per origin: the others wait in its memory, claimed), and returns the
// IDs of the deliveries and the sink, which answers 204 from then on.
func killedHolding(t *testing.T, env []string, n int) ([]string, *heraldtest.Receiver) {
	t.Helper()
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // before the receiver closes
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		<-hold
		return http.StatusNoContent, nil
	})
	a, na := childNode(t, env)
	createSub(t, na, rcv.URL)
	events := make([]*cloudeventsv1.CloudEvent, n)
	for i := range events {
		events[i] = newEvent(fmt.Sprint("lease-", i))
	}
	var ids []string
	for _, r := range publish(t, na, events...) {
		ids = append(ids, r.GetDeliveryIds()...)
	}
	if len(ids) != n {
		t.Fatalf("%d deliveries, want %d", len(ids), n)
	}
	rcv.WaitFor(t, 1, wait)
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	release()
	return ids, rcv
}

// heldBy reads the deliveries ids from the SQLite store at path (no node
// running) and fails the test unless each is in flight, held by holder,
// with a lease ending after leaseAfter and before leaseBefore.
func heldBy(t *testing.T, path string, ids []string, holder string, leaseAfter, leaseBefore time.Time) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range ids {
		d, err := s.DeliveryGet(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != store.DeliveryInFlight || d.Holder != holder || !d.LeaseUntil.After(leaseAfter) || !d.LeaseUntil.Before(leaseBefore) {
			t.Fatalf("%s is %s held by %q until %s; want in flight, held by %q, its lease ending between %s and %s",
				id, d.State, d.Holder, d.LeaseUntil, holder, leaseAfter, leaseBefore)
		}
	}
}

// leaseEnv is the environment of a node of the lease tests: a SQLite
// store at path, one request at a time per origin, and the given leases.
func leaseEnv(t *testing.T, path, nodeID, lease, leaseRenew string) []string {
	return []string{
		"HERALD_STORE=" + path,
		"HERALD_TEMPORAL_ADDR=" + temporalAddr,
		"HERALD_TASK_QUEUE=e2e-" + t.Name(),
		"HERALD_ORIGIN_CONCURRENCY=1",
		"HERALD_MAX_ORIGIN_CONCURRENCY=1",
		"HERALD_CATALOG_RELOAD=100ms",
		"HERALD_LOG_LEVEL=error",
		"HERALD_NODE_ID=" + nodeID,
		"HERALD_LEASE=" + lease,
		"HERALD_LEASE_RENEW=" + leaseRenew,
	}
}

// TestLease_ANodeKilledAndStartedAgainSendsWhatItHeldAtOnce: a node
// killed with SIGKILL while it holds deliveries (one being sent, the
// others waiting their turn), under leases of 10 minutes, is started
// again with the same node ID: it puts back what it held as it starts
// and delivers all of it, without waiting for those leases to end.
func TestLease_ANodeKilledAndStartedAgainSendsWhatItHeldAtOnce(t *testing.T) {
	path := tempStore(t)
	env := leaseEnv(t, path, "lease-a", "10m", "10m")
	killed := time.Now()
	ids, _ := killedHolding(t, env, 5)
	// The leases the node died with end in 10 minutes.
	heldBy(t, path, ids, "lease-a", killed.Add(5*time.Minute), killed.Add(11*time.Minute))

	_, again := childNode(t, env)
	for _, id := range ids {
		// Within wait, long before the leases end.
		waitDeliveryState(t, again, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
}

// TestLease_AnotherNodeTakesOverADeadNodesDeliveriesAfterTheShortLease:
// a node killed with SIGKILL while it holds deliveries it never
// attempted holds them by a short lease (--lease-renew, 20 s), renewed
// only while it lived, though it could keep each for 10 minutes
// (--lease); another node, with an ID of its own, claims and delivers
// them once that short lease has ended.
func TestLease_AnotherNodeTakesOverADeadNodesDeliveriesAfterTheShortLease(t *testing.T) {
	path := tempStore(t)
	killed := time.Now()
	ids, rcv := killedHolding(t, leaseEnv(t, path, "lease-a", "10m", "20s"), 5)
	// Renewed while the node lived: each lease ends within 20 s of the
	// kill, not 10 minutes after its claim.
	heldBy(t, path, ids, "lease-a", killed, time.Now().Add(20*time.Second))

	_, b := childNode(t, leaseEnv(t, path, "lease-b", "10m", "20s"))
	for _, id := range ids {
		waitDeliveryState(t, b, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
	// Each event reached the sink from node B: the first, which node A
	// was sending when it died, twice at most.
	seen := map[string]int{}
	for _, r := range rcv.Requests() {
		seen[r.Header.Get("Ce-Id")]++
	}
	var twice []string
	for i := range ids {
		id := fmt.Sprint("lease-", i)
		if seen[id] == 0 || seen[id] > 2 {
			t.Errorf("%s reached the sink %d times", id, seen[id])
		}
		if seen[id] > 1 {
			twice = append(twice, id)
		}
	}
	if len(twice) > 1 {
		t.Errorf("%v reached the sink twice: only the request in flight at the kill may be repeated", twice)
	}
}
