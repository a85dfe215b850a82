package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/cli"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// herald runs the CLI against n as key and returns its exit code, output
// and errors.
func herald(t *testing.T, n *testNode, key string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errs bytes.Buffer
	full := append(append([]string(nil), args[1:]...), "--addr", n.GRPCAddr())
	if key != "" {
		full = append(full, "--api-key", key)
	}
	code := cli.Run(context.Background(), args[0], full, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errs})
	return code, out.String(), errs.String()
}

// TestCLI_AnOperatorsDay drives the CLI as an operator would: make a key,
// create a subscription, publish, follow the delivery and its attempts,
// redrive a dead letter, with tables, JSON and YAML, and the exit codes
// scripts rely on.
func TestCLI_AnOperatorsDay(t *testing.T) {
	n := authNode(t)
	admin := n.cfg.AdminKey
	rcv := heraldtest.NewReceiver(t, nil)

	code, out, errs := herald(t, n, admin, "", "keys", "create", "--scope", "publish", "--scope", "deliveries.read", "--tenant", "acme", "--name", "acme orders", "-o", "json")
	if code != cli.ExitOK {
		t.Fatalf("keys create: %d %s", code, errs)
	}
	var key struct {
		ID, Secret, Tenant string
		Scopes             []string
	}
	if err := json.Unmarshal([]byte(out), &key); err != nil || !strings.HasPrefix(key.Secret, "hk_") || key.Tenant != "acme" || len(key.Scopes) != 2 {
		t.Fatalf("keys create -o json: %v\n%s", err, out)
	}
	code, out, _ = herald(t, n, admin, "", "keys", "list")
	if code != 0 || !strings.Contains(out, "acme orders") || strings.Contains(out, key.Secret) || !strings.Contains(out, "HINT") {
		t.Errorf("keys list: %d\n%s", code, out)
	}

	code, out, errs = herald(t, n, admin, "", "subscriptions", "create", "--sink", rcv.URL, "--type", "com.example.order.created", "--tenant", "acme", "--skip-validation")
	if code != 0 || !strings.Contains(out, "SIGNING SECRET") || !strings.Contains(out, "whsec_") {
		t.Fatalf("subscriptions create: %d %s\n%s", code, errs, out)
	}
	code, out, _ = herald(t, n, admin, "", "subscriptions", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "active") || !strings.Contains(lines[1], "acme") {
		t.Fatalf("subscriptions list: %d\n%s", code, out)
	}
	sub := strings.Fields(lines[1])[0]
	code, out, _ = herald(t, n, admin, "", "subscriptions", "get", sub, "-o", "yaml")
	if code != 0 || !strings.Contains(out, "tenant: acme") || !strings.Contains(out, "sink: "+rcv.URL) {
		t.Errorf("subscriptions get -o yaml: %d\n%s", code, out)
	}

	// Publish as acme's key, from a file of two events on standard input
	// (Python-style whitespace, data_base64 before datacontenttype).
	events := `[{"specversion": "1.0", "id": "cli-1", "source": "/orders", "type": "com.example.order.created", "subject": "customer-9", "data_base64": "AP/+", "datacontenttype": "application/octet-stream"},
	           {"specversion": "1.0", "id": "cli-2", "source": "/orders", "type": "com.example.order.created", "subject": "customer-9", "data": {"n": 2}}]`
	code, out, errs = herald(t, n, key.Secret, events, "publish", "-f", "-")
	if code != 0 || strings.Count(out, "accepted") != 2 {
		t.Fatalf("publish -f -: %d %s\n%s", code, errs, out)
	}
	rcv.WaitFor(t, 2, wait)
	heraldtest.Eventually(t, wait, "both deliveries delivered", func() bool {
		_, out, _ := herald(t, n, key.Secret, "", "deliveries", "list", "--state", "delivered")
		return strings.Count(out, "delivered") == 2
	})
	_, out, _ = herald(t, n, key.Secret, "", "deliveries", "list", "-o", "json")
	var list struct{ Deliveries []struct{ ID string } }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Deliveries) != 2 {
		t.Fatalf("deliveries list -o json: %v\n%s", err, out)
	}
	code, out, _ = herald(t, n, key.Secret, "", "deliveries", "attempts", list.Deliveries[0].ID)
	if code != 0 || !strings.Contains(out, "204") {
		t.Errorf("deliveries attempts: %d\n%s", code, out)
	}

	// An erasure request for everything about a customer.
	code, _, errs = herald(t, n, admin, "", "events", "erase", "--subject", "customer-9", "--tenant", "acme")
	if code != 0 || !strings.Contains(errs, "erased the data of 2 events") {
		t.Errorf("events erase --subject: %d %q, want 2 erased", code, errs)
	}
	if code, _, _ := herald(t, n, admin, "", "events", "erase", "--subject", "customer-9", "/orders", "cli-1"); code != cli.ExitUsage {
		t.Errorf("events erase with a subject and an event: %d, want exit 2", code)
	}

	// Exit codes: not found 3, usage 2, refused 1 with the status in one line.
	if code, _, errs := herald(t, n, admin, "", "deliveries", "get", "dlv_nope"); code != cli.ExitNotFound || !strings.Contains(errs, "NotFound") {
		t.Errorf("get of nothing: %d %q, want exit 3 saying NotFound", code, errs)
	}
	if code, _, _ := herald(t, n, admin, "", "subscriptions", "get"); code != cli.ExitUsage {
		t.Errorf("get without an ID: %d, want exit 2", code)
	}
	if code, _, errs := herald(t, n, key.Secret, "", "subscriptions", "list"); code != cli.ExitError || !strings.Contains(errs, "PermissionDenied") {
		t.Errorf("a publish key listing subscriptions: %d %q, want exit 1 saying PermissionDenied", code, errs)
	}
	if code, _, errs := herald(t, n, "", "", "subscriptions", "create", "--sink", "ftp://x", "--skip-validation", "--api-key", admin); code != cli.ExitError || !strings.Contains(errs, "subscription.sink") {
		t.Errorf("an invalid sink: %d %q, want the field violation in one line", code, errs)
	}

	// Dead letters: a sink answering 400 dead-letters at once; redrive.
	bad := heraldtest.NewReceiver(t, failFirst(1, 400, nil))
	_, out, _ = herald(t, n, admin, "", "subscriptions", "create", "--sink", bad.URL, "--type", "com.example.order.paid", "--skip-validation", "-o", "json")
	var badSub struct{ ID string }
	_ = json.Unmarshal([]byte(out), &badSub)
	if code, _, errs := herald(t, n, admin, "", "publish", "--id", "cli-3", "--source", "/orders", "--type", "com.example.order.paid", "--data", `{"n":3}`); code != 0 {
		t.Fatalf("publish with flags: %d %s", code, errs)
	}
	heraldtest.Eventually(t, wait, "a dead letter", func() bool {
		_, out, _ := herald(t, n, admin, "", "dead-letters", "list", "--subscription", badSub.ID)
		return strings.Contains(out, "400")
	})
	// Search by the sink's host: host:port names one receiver, the host
	// name alone every port on it.
	badHost := strings.TrimPrefix(strings.TrimSuffix(bad.URL, "/hook"), "http://")
	_, out, _ = herald(t, n, admin, "", "deliveries", "list", "--sink-host", badHost, "-o", "json")
	var onHost struct {
		Deliveries []struct{ SubscriptionID string }
	}
	if err := json.Unmarshal([]byte(out), &onHost); err != nil || len(onHost.Deliveries) != 1 || onHost.Deliveries[0].SubscriptionID != badSub.ID {
		t.Errorf("deliveries list --sink-host %s: %v\n%s", badHost, err, out)
	}
	if _, out, _ = herald(t, n, admin, "", "deliveries", "list", "--sink-host", "127.0.0.1"); strings.Count(out, "dlv_") != 3 {
		t.Errorf("deliveries list --sink-host 127.0.0.1: want all 3 deliveries\n%s", out)
	}
	// Search by the event and by how the latest attempt ended.
	_, out, _ = herald(t, n, admin, "", "deliveries", "list", "--last-status", "4xx", "-o", "json")
	onHost.Deliveries = nil
	if err := json.Unmarshal([]byte(out), &onHost); err != nil || len(onHost.Deliveries) != 1 || onHost.Deliveries[0].SubscriptionID != badSub.ID {
		t.Errorf("deliveries list --last-status 4xx: want the dead letter alone: %v\n%s", err, out)
	}
	if _, out, _ = herald(t, n, admin, "", "deliveries", "list", "--type", "com.example.order.paid", "--event-source", "/orders", "--event-id", "cli-3"); strings.Count(out, "dlv_") != 1 {
		t.Errorf("deliveries list of event /orders cli-3: want its one delivery\n%s", out)
	}
	if _, out, _ = herald(t, n, admin, "", "deliveries", "list", "--type", "com.example.order.paid", "--event-id", "cli-1"); strings.Count(out, "dlv_") != 0 {
		t.Errorf("deliveries list of a type and an event of another type: want none\n%s", out)
	}
	if code, _, _ := herald(t, n, admin, "", "deliveries", "list", "--last-status", "6xx"); code != cli.ExitUsage {
		t.Errorf("--last-status 6xx: exit %d, want 2", code)
	}
	code, out, errs = herald(t, n, admin, "", "dead-letters", "redrive", "--subscription", badSub.ID)
	if code != 0 || !strings.Contains(out, "1") {
		t.Errorf("dead-letters redrive: %d %s\n%s", code, errs, out)
	}
	bad.WaitFor(t, 2, wait)
}

// TestCLI_SubscriptionsCarryNamesAndLabelsToFilterOn: a name and labels
// set at create show in lists, and a label filter keeps only the
// subscriptions that have it; a bad label key is refused.
func TestCLI_SubscriptionsCarryNamesAndLabelsToFilterOn(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	for _, args := range [][]string{
		{"--name", "Payments EU", "--label", "team=payments", "--label", "env=prod"},
		{"--name", "Search", "--label", "team=search", "--label", "env=prod"},
	} {
		full := append([]string{"subscriptions", "create", "--sink", rcv.URL, "--skip-validation"}, args...)
		if code, _, errs := herald(t, n, "", "", full...); code != 0 {
			t.Fatalf("create %v: %d %s", args, code, errs)
		}
	}
	code, out, _ := herald(t, n, "", "", "subscriptions", "list", "--label", "team=payments")
	if code != 0 || !strings.Contains(out, "Payments EU") || strings.Contains(out, "Search") {
		t.Errorf("list --label team=payments: %d\n%s", code, out)
	}
	_, out, _ = herald(t, n, "", "", "subscriptions", "list", "--label", "env=prod", "-o", "json")
	if strings.Count(out, `"displayName"`) != 2 || !strings.Contains(out, `"team": "search"`) {
		t.Errorf("list --label env=prod -o json:\n%s", out)
	}
	if code, _, errs := herald(t, n, "", "", "subscriptions", "create", "--sink", rcv.URL, "--label", "Bad Key=x"); code != cli.ExitError || !strings.Contains(errs, "subscription.labels") {
		t.Errorf("a bad label key: %d %s", code, errs)
	}

	// update changes the fields given and only those.
	_, out, _ = herald(t, n, "", "", "subscriptions", "list", "--label", "team=search", "-o", "json")
	var listed struct{ Subscriptions []struct{ ID string } }
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Subscriptions) != 1 {
		t.Fatalf("list --label team=search: %v\n%s", err, out)
	}
	id := listed.Subscriptions[0].ID
	code, out, errs := herald(t, n, "", "", "subscriptions", "update", id, "--name", "Search v2", "--rate-limit", "120", "--suspend-after", "1h", "-o", "json")
	var updated struct {
		DisplayName  string
		RateLimit    int
		SuspendAfter string
		Labels       map[string]string
	}
	if err := json.Unmarshal([]byte(out), &updated); code != 0 || err != nil {
		t.Fatalf("update: %d %v %s\n%s", code, err, errs, out)
	}
	if updated.DisplayName != "Search v2" || updated.RateLimit != 120 || updated.SuspendAfter != "3600s" || updated.Labels["team"] != "search" || updated.Labels["env"] != "prod" {
		t.Errorf("after update --name --rate-limit --suspend-after: %+v, want those changed and the labels kept", updated)
	}
	if code, _, _ := herald(t, n, "", "", "subscriptions", "update", id); code != cli.ExitUsage {
		t.Errorf("update without a field: exit %d, want 2", code)
	}
}

// TestHealth_TheFailingEndpointComesFirst: a subscription whose sink
// fails everything shows its failures in a row, its last failure and a
// first-attempt success of 0, and `herald endpoints health` lists it
// before a healthy one.
func TestHealth_TheFailingEndpointComesFirst(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	good := heraldtest.NewReceiver(t, nil)
	bad := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusBadRequest, nil })
	goodSub := createSub(t, n, good.URL, func(s *heraldv1.Subscription) { s.DisplayName = "good" })
	badSub := createSub(t, n, bad.URL, func(s *heraldv1.Subscription) {
		s.DisplayName = "bad"
		s.Types = []string{"com.example.order.paid"}
	})
	for i := range 3 {
		publish(t, n, newEvent(fmt.Sprint("h-good-", i)))
		e := newEvent(fmt.Sprint("h-bad-", i))
		e.Type = "com.example.order.paid"
		publish(t, n, e)
	}
	good.WaitFor(t, 3, wait)
	var h *heraldv1.SubscriptionHealth
	heraldtest.Eventually(t, wait, "three dead letters", func() bool {
		var err error
		h, err = n.subs.GetSubscriptionHealth(ctx(t), &heraldv1.GetSubscriptionHealthRequest{Id: badSub.GetId()})
		return err == nil && h.GetLastHour().GetDead() == 3
	})
	if h.GetConsecutiveFailures() != 3 || h.GetLastFailureStatus() != 400 || h.GetLastHour().GetFirstAttemptSuccessRate() != 0 || h.GetLastSuccessTime() != nil {
		t.Errorf("the failing endpoint's health: %v", h)
	}
	heraldtest.Eventually(t, wait, "three delivered", func() bool {
		g, err := n.subs.GetSubscriptionHealth(ctx(t), &heraldv1.GetSubscriptionHealthRequest{Id: goodSub.GetId()})
		return err == nil && g.GetLastHour().GetDelivered() == 3 && g.GetLastHour().GetFirstAttemptSuccessRate() == 1 &&
			g.GetConsecutiveFailures() == 0 && g.GetLastHour().GetLatencyP95() != nil
	})
	code, out, errs := herald(t, n, "", "", "endpoints", "health")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[1], "bad") || !strings.Contains(lines[2], "good") {
		t.Errorf("endpoints health: %d %s\n%s", code, errs, out)
	}
}

// lockedBuffer is an output a command writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCLI_WatchListsAgainUntilInterrupted: `deliveries list --watch`
// shows a delivery made after it started, and an interrupt ends it with
// exit 0; a watch faster than a second is a usage error.
func TestCLI_WatchListsAgainUntilInterrupted(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	if code, _, errs := herald(t, n, "", "", "subscriptions", "create", "--sink", rcv.URL, "--skip-validation"); code != 0 {
		t.Fatalf("subscriptions create: %d %s", code, errs)
	}
	ctx, interrupt := context.WithCancel(context.Background())
	var out, errs lockedBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Run(ctx, "deliveries", []string{"list", "--event-id", "watched-1", "--watch", "1s", "--addr", n.GRPCAddr()},
			cli.IO{In: strings.NewReader(""), Out: &out, Err: &errs})
	}()
	heraldtest.Eventually(t, wait, "the first round", func() bool { return strings.Contains(out.String(), "every 1s") })
	if strings.Contains(out.String(), "dlv_") {
		t.Fatalf("a delivery listed before its event was published:\n%s", out.String())
	}
	if code, _, e := herald(t, n, "", "", "publish", "--id", "watched-1", "--source", "/watch", "--type", "com.example.watched"); code != 0 {
		t.Fatalf("publish: %d %s", code, e)
	}
	heraldtest.Eventually(t, wait, "the delivery in a later round", func() bool { return strings.Contains(out.String(), "dlv_") })
	interrupt()
	select {
	case code := <-exit:
		if code != cli.ExitOK {
			t.Errorf("an interrupted watch exited %d, want 0: %s", code, errs.String())
		}
	case <-time.After(wait):
		t.Fatal("the watch did not end when interrupted")
	}
	if code, _, _ := herald(t, n, "", "", "deliveries", "list", "--watch", "100ms"); code != cli.ExitUsage {
		t.Errorf("--watch 100ms: exit %d, want 2", code)
	}
}

// TestCLI_RedriveShowsItsProgress: a redrive of several dead letters at a
// slow rate draws a progress line counting the dead letters left, ends
// it with a full bar and the count, and every dead letter is delivered.
func TestCLI_RedriveShowsItsProgress(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	const dead = 3
	rcv := heraldtest.NewReceiver(t, failFirst(dead, http.StatusBadRequest, nil))
	sub := createSub(t, n, rcv.URL)
	for i := range dead {
		publish(t, n, newEvent(fmt.Sprint("redrive-progress-", i)))
	}
	heraldtest.Eventually(t, wait, "the dead letters", func() bool {
		_, out, _ := herald(t, n, "", "", "dead-letters", "list", "--subscription", sub.GetId())
		return strings.Count(out, "dlv_") == dead
	})
	code, out, errs := herald(t, n, "", "", "dead-letters", "redrive", "--subscription", sub.GetId(), "--rate", "1")
	if code != 0 || !strings.Contains(out, fmt.Sprint(dead)) {
		t.Fatalf("redrive: %d %s\n%s", code, errs, out)
	}
	if !strings.Contains(errs, "dead letters left") || !strings.Contains(errs, "[##############################]  3 redriven") {
		t.Errorf("redrive at 1/s of %d dead letters: no progress line, or it did not end full:\n%q", dead, errs)
	}
	rcv.WaitFor(t, 2*dead, wait)
}
