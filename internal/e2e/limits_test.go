package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// clusterEnv is the environment of two `herald serve` nodes sharing one
// PostgreSQL store and a Temporal server persisting to PostgreSQL.
func clusterEnv(t *testing.T, queue string) []string {
	return []string{
		"HERALD_STORE=" + postgresStore(t),
		"HERALD_TEMPORAL_ADDR=" + postgresTemporalAddr(t),
		"HERALD_TASK_QUEUE=" + queue,
		"HERALD_ALLOW_INSECURE_SINKS=true",
		"HERALD_CATALOG_RELOAD=200ms",
		"HERALD_LOG_LEVEL=error",
	}
}

// TestMultiNode_AGrantedRateHoldsForTheClusterAndTheOrigin: a sink
// origin grants 120 requests a minute to one subscription's handshake
// and 60 to another's (two paths on the origin); events for both,
// published through both of two nodes, reach it, all of them, and in
// any window of T seconds at most 60/min × (T + 0.5 s) + 2 requests
// arrive: the lowest grant, for the origin as a whole and the whole
// cluster, plus the documented burst (2 tokens, and tokens a node may
// hold unspent for 0.5 s). Each node alone would send at the full rate,
// and each subscription at its own grant: without the origin's shared
// bucket the sink would get 180 a minute, three times as many.
func TestMultiNode_AGrantedRateHoldsForTheClusterAndTheOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	env := clusterEnv(t, "e2e-cluster-rate")
	_, na := childNode(t, env)
	_, nb := childNode(t, env)
	var mu sync.Mutex
	grants := []string{"120", "60"}
	sink := newHandshakeSink(t, func(h http.Header) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		rate := grants[0]
		grants = grants[1:]
		return http.StatusOK, http.Header{"Webhook-Allowed-Origin": {h.Get("WebHook-Request-Origin")}, "Webhook-Allowed-Rate": {rate}, "Allow": {"POST"}}
	})
	var ids []string
	for i, want := range []int32{120, 60} {
		sub := createSub(t, na, fmt.Sprintf("%s/%d", sink.URL, i), withHandshake)
		if got := waitSubscriptionState(t, na, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE); got.GetAllowedRate() != want {
			t.Fatalf("allowed rate = %d, want the granted %d", got.GetAllowedRate(), want)
		}
		ids = append(ids, sub.GetId())
	}
	// Both nodes see both subscriptions and the origin's lowest grant at
	// their next catalog reload (until then a node keeps to the grant it
	// knows): each subscription shows the rate in force for its origin,
	// the lower grant, whichever it was granted itself. The measured part
	// starts when both nodes show it, and any token leased at a rate a
	// node knew before has expired.
	for _, n := range []*testNode{na, nb} {
		for _, id := range ids {
			heraldtest.Eventually(t, wait, "the origin's lowest grant in force for "+id, func() bool {
				got, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: id})
				return err == nil && got.GetOriginAllowedRate() == 60
			})
		}
	}
	countPosts := func() int {
		n := 0
		for _, p := range sink.posts() {
			if strings.HasPrefix(p.Header.Get("Ce-Id"), "rate-") {
				n++
			}
		}
		return n
	}
	time.Sleep(config.DefaultTokenSpend)
	start := time.Now()
	const events = 15 // each delivered to both subscriptions
	publishAlternately(t, na, nb, "rate-", events, 5)
	heraldtest.Eventually(t, 3*wait, "every event delivered", func() bool { return countPosts() >= 2*events })
	var posts []heraldtest.Request
	for _, p := range sink.posts() {
		if !p.At.Before(start) {
			posts = append(posts, p)
		}
	}
	const rate, burst = 1.0, 2.0 // a second; Burst(60) is 2
	spend := config.DefaultTokenSpend.Seconds()
	// A request reaches the sink a little after it starts: allow 0.1 s.
	const transit = 0.1
	worst := 0.0
	for i := range posts {
		for j := i; j < len(posts); j++ {
			window := posts[j].At.Sub(posts[i].At).Seconds()
			n := float64(j - i + 1)
			bound := rate*(window+spend+transit) + burst
			worst = max(worst, n-rate*window)
			if n > bound {
				t.Fatalf("%v requests reached the sink within %.2fs: over 60/min × (T + %.1fs) + %v", n, window, spend+transit, burst)
			}
		}
	}
	first, last := posts[0].At, posts[len(posts)-1].At
	t.Logf("%d requests to two subscriptions on one origin over %.1fs through two nodes: %.2f/s; most over the rate in any window: %.1f",
		len(posts), last.Sub(first).Seconds(), float64(len(posts)-1)/last.Sub(first).Seconds(), worst)
}

// TestMultiNode_RetryAfterOnOneNodePausesTheOther: a sink answers one
// node's request with 429 and Retry-After: 5; the other node, sending to
// another subscription on the same sink origin, waits out the pause too.
func TestMultiNode_RetryAfterOnOneNodePausesTheOther(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	env := clusterEnv(t, "e2e-cluster-pause")
	_, na := childNode(t, env)
	_, nb := childNode(t, env)
	var mu sync.Mutex
	paused := false
	rcv := heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Ce-Id") == "pause-trigger" && !paused {
			paused = true
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"5"}}
		}
		return http.StatusNoContent, nil
	})
	createSub(t, na, rcv.URL+"/one")
	other := func(s *heraldv1.Subscription) { s.Types = []string{"com.example.other"} }
	createSub(t, na, rcv.URL+"/two", other)
	otherEvent := func(id string) *cloudeventsv1.CloudEvent {
		e := newEvent(id)
		e.Type = "com.example.other"
		return e
	}
	probe := 0
	heraldtest.Eventually(t, wait, "node B to see the second subscription", func() bool {
		probe++
		return len(publish(t, nb, otherEvent(fmt.Sprint("pause-probe-", probe)))[0].GetDeliveryIds()) == 1
	})
	publish(t, na, newEvent("pause-trigger"))
	var answered time.Time // when the sink answered 429
	heraldtest.Eventually(t, wait, "the sink to answer 429", func() bool {
		for _, r := range rcv.Requests() {
			if r.Header.Get("Ce-Id") == "pause-trigger" {
				answered = r.At
				return true
			}
		}
		return false
	})
	// Node B reads the pauses every second (config.DefaultClusterRefresh);
	// publish to it 3 s into the 5 s pause.
	time.Sleep(time.Until(answered.Add(3 * time.Second)))
	publish(t, nb, otherEvent("after-pause"))
	var got heraldtest.Request
	heraldtest.Eventually(t, wait, "the event published through B delivered", func() bool {
		for _, r := range rcv.Requests() {
			if r.Header.Get("Ce-Id") == "after-pause" {
				got = r
				return true
			}
		}
		return false
	})
	// The pause runs from when A's request started, a little before the
	// sink answered.
	if early := answered.Add(5 * time.Second).Sub(got.At); early > 250*time.Millisecond {
		t.Fatalf("node B sent to the paused origin %v before the pause ended", early)
	}
	t.Logf("429 at %s; B's request %.2fs later", answered.Format("15:04:05.000"), got.At.Sub(answered).Seconds())
}

// TestMultiNode_MaxConcurrencyIsSharedByTheNodes: a subscription with
// max_concurrency 2 and a sink that takes 100 ms to answer, events
// published through both of two nodes: the sink never has more than
// 2 × ceil(2 / 2) = 2 requests in flight at once. Each node alone would
// allow 2, so without the sharing the sink would see up to 4.
func TestMultiNode_MaxConcurrencyIsSharedByTheNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	env := clusterEnv(t, "e2e-cluster-concurrency")
	_, na := childNode(t, env)
	_, nb := childNode(t, env)
	var mu sync.Mutex
	inFlight, most := 0, 0
	rcv := heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return http.StatusNoContent, nil
	})
	createSub(t, na, rcv.URL, func(s *heraldv1.Subscription) { s.MaxConcurrency = 2 })
	probe := 0
	heraldtest.Eventually(t, wait, "node B to see the subscription", func() bool {
		probe++
		return len(publish(t, nb, newEvent(fmt.Sprint("conc-probe-", probe)))[0].GetDeliveryIds()) == 1
	})
	// Each node counts the live nodes at its heartbeat, every second
	// (config.DefaultClusterRefresh): let both have counted two.
	time.Sleep(2 * config.DefaultClusterRefresh)
	mu.Lock()
	most = 0
	mu.Unlock()
	const events = 40
	publishAlternately(t, na, nb, "conc-", events, 10)
	heraldtest.Eventually(t, wait, "every event delivered", func() bool {
		n := 0
		for _, r := range rcv.Requests() {
			if strings.HasPrefix(r.Header.Get("Ce-Id"), "conc-") && !strings.HasPrefix(r.Header.Get("Ce-Id"), "conc-probe-") {
				n++
			}
		}
		return n >= events
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d events through two nodes, max_concurrency 2: at most %d in flight at the sink", events, most)
	if most > 2 {
		t.Fatalf("the sink had %d requests in flight at once, over 2 × ceil(2/2) = 2", most)
	}
}

// publishAlternately publishes events events with IDs prefix0,
// prefix1, ..., perCall to a call, the calls to na and nb in turn.
func publishAlternately(t *testing.T, na, nb *testNode, prefix string, events, perCall int) {
	t.Helper()
	for call := range events / perCall {
		n := na
		if call%2 == 1 {
			n = nb
		}
		batch := make([]*cloudeventsv1.CloudEvent, perCall)
		for i := range batch {
			batch[i] = newEvent(fmt.Sprint(prefix, call*perCall+i))
		}
		publish(t, n, batch...)
	}
}
