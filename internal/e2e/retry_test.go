package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/workflows"
)

func temporalClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: temporalAddr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// failFirst answers status to the first n requests, then 204.
func failFirst(n int, status int, header http.Header) heraldtest.Respond {
	return func(i int, _ *http.Request) (int, http.Header) {
		if i < n {
			return status, header
		}
		return http.StatusNoContent, nil
	}
}

func TestDelivery_FailingReceiverIsRetriedByItsWorkflow(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	// The Temporal server runs in this test process, as in dev mode: the
	// hand-off goes through the pacer.
	cfg.EmbeddedTemporal = true
	n := startNode(t, cfg)
	const failures = 2
	rcv := heraldtest.NewReceiver(t, failFirst(failures, http.StatusInternalServerError, nil))
	sub := createSub(t, n, rcv.URL)

	id := publish(t, n, newEvent("evt-retry"))[0].GetDeliveryIds()[0]
	d := waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)

	at, err := n.deliveries.ListAttempts(ctx(t), &heraldv1.ListAttemptsRequest{DeliveryId: id})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int32
	for _, a := range at.GetAttempts() {
		statuses = append(statuses, a.GetStatusCode())
	}
	if fmt.Sprint(statuses) != "[500 500 204]" || d.GetAttempts() != failures+1 {
		t.Errorf("attempt statuses = %v (delivery says %d attempts), want [500 500 204]", statuses, d.GetAttempts())
	}
	// The retries ran in the delivery's Temporal workflow.
	wid := workflows.WorkflowID(sub.GetId(), id)
	if d.GetWorkflowId() != wid {
		t.Errorf("workflow id = %q, want %q", d.GetWorkflowId(), wid)
	}
	// The workflow records the delivery, then completes.
	tc := temporalClient(t)
	heraldtest.Eventually(t, wait, "workflow "+wid+" to complete", func() bool {
		desc, err := tc.DescribeWorkflowExecution(ctx(t), wid, "")
		return err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	// The same webhook-id on every attempt.
	reqs := rcv.Requests()
	for _, r := range reqs {
		if r.Header.Get("webhook-id") != d.GetWebhookId() {
			t.Errorf("webhook-id %q, want %q on every attempt", r.Header.Get("webhook-id"), d.GetWebhookId())
		}
	}
}

func TestDelivery_RetryAfterPausesEveryDeliveryToTheSink(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusTooManyRequests, http.Header{"Retry-After": {"2"}}))
	createSub(t, n, rcv.URL)

	first := publish(t, n, newEvent("evt-a"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, first, heraldv1.DeliveryState_DELIVERY_STATE_RETRYING)
	limited := rcv.Requests()[0].At

	second := publish(t, n, newEvent("evt-b"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, second, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	waitDeliveryState(t, n, first, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	for _, r := range rcv.Requests()[1:] {
		// The pause runs from the start of the limited request, which is
		// a little before the receiver recorded it.
		if early := limited.Add(2 * time.Second).Sub(r.At); early > 250*time.Millisecond {
			t.Errorf("a request was sent %s before the Retry-After ended", early)
		}
	}
}

func TestDelivery_DeadLetterIsFoundBySearchAttributeAndRedriven(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	var healthy atomic.Bool
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		if healthy.Load() {
			return http.StatusOK, nil
		}
		return http.StatusBadRequest, nil // permanent: dead-letters at once
	})
	sub := createSub(t, n, rcv.URL)
	id := publish(t, n, newEvent("evt-dead"))[0].GetDeliveryIds()[0]
	d := waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DEAD)
	if d.GetLastStatusCode() != http.StatusBadRequest {
		t.Errorf("last status = %d, want 400", d.GetLastStatusCode())
	}

	// What an operator types in the Temporal UI.
	tc := temporalClient(t)
	query := fmt.Sprintf(`HeraldDeliveryState="dead" AND HeraldSubscriptionId=%q`, sub.GetId())
	var found []string
	heraldtest.Eventually(t, wait, "the dead letter in visibility", func() bool {
		resp, err := tc.ListWorkflow(ctx(t), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Logf("list workflows: %v", err)
			return false
		}
		found = found[:0]
		for _, e := range resp.GetExecutions() {
			found = append(found, e.GetExecution().GetWorkflowId())
		}
		return len(found) > 0
	})
	if want := workflows.WorkflowID(sub.GetId(), id); len(found) != 1 || found[0] != want {
		t.Fatalf("query %s found %v, want [%s]", query, found, want)
	}

	healthy.Store(true)
	if _, err := n.deliveries.RedriveDelivery(ctx(t), &heraldv1.RedriveDeliveryRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	d = waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if d.GetAttempts() != 2 {
		t.Errorf("attempts = %d, want 2 (the dead one and the redrive)", d.GetAttempts())
	}
	reqs := rcv.Requests()
	if len(reqs) != 2 || reqs[0].Header.Get("webhook-id") != reqs[1].Header.Get("webhook-id") {
		t.Errorf("%d requests; webhook-ids must match across the redrive", len(reqs))
	}
	// Redriving a delivered delivery is refused.
	if _, err := n.deliveries.RedriveDelivery(ctx(t), &heraldv1.RedriveDeliveryRequest{Id: id}); err == nil {
		t.Error("redrive of a delivered delivery succeeded, want FailedPrecondition")
	}
}

func TestDelivery_RedriveDeadLettersOfASubscription(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	var healthy atomic.Bool
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		if healthy.Load() {
			return http.StatusOK, nil
		}
		return http.StatusForbidden, nil
	})
	sub := createSub(t, n, rcv.URL)
	var ids []string
	for i := range 3 {
		ids = append(ids, publish(t, n, newEvent(fmt.Sprintf("evt-%d", i)))[0].GetDeliveryIds()[0])
	}
	for _, id := range ids {
		waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DEAD)
	}
	healthy.Store(true)
	resp, err := n.deliveries.RedriveDeadLetters(ctx(t), &heraldv1.RedriveDeadLettersRequest{SubscriptionId: sub.GetId(), RatePerSecond: 50})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRedriven() != 3 {
		t.Errorf("redriven = %d, want 3", resp.GetRedriven())
	}
	for _, id := range ids {
		waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
}

func TestRestart_DeliveriesInBackoffAreNotLost(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	n := startNode(t, cfg)
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusServiceUnavailable, nil))
	createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.RetryPolicy = &heraldv1.RetryPolicy{InitialInterval: durationpb.New(3 * time.Second), BackoffCoefficient: 1}
	})
	id := publish(t, n, newEvent("evt-restart"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_RETRYING)

	stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	n.Stop(stop)
	cancel()
	n2 := startNode(t, cfg)
	waitDeliveryState(t, n2, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
}

// TestCrash_KilledNodeLosesNoAcceptedEvent kills a real Herald process
// (SIGKILL) after Publish returned and while the first attempt is in
// flight; a new process on the same store delivers the event.
func TestCrash_KilledNodeLosesNoAcceptedEvent(t *testing.T) {
	store := tempStore(t)
	release := make(chan struct{})
	rcv := heraldtest.NewReceiver(t, func(i int, _ *http.Request) (int, http.Header) {
		if i == 0 {
			<-release // hold the first attempt until the sender is dead
		}
		return http.StatusNoContent, nil
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	env := []string{
		"HERALD_STORE=" + store,
		"HERALD_TEMPORAL_ADDR=" + temporalAddr,
		"HERALD_TASK_QUEUE=e2e-crash",
		"HERALD_NODE_ID=" + newNodeID(t), // the same after the restart
		"HERALD_ALLOW_INSECURE_SINKS=true",
		"HERALD_LEASE=20s",
		"HERALD_LOG_LEVEL=warn",
	}
	cmd, n := childNode(t, env)
	createSub(t, n, rcv.URL)
	id := publish(t, n, newEvent("evt-crash"))[0].GetDeliveryIds()[0]
	rcv.WaitFor(t, 1, wait) // the first attempt is in flight
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	close(release)

	_, n2 := childNode(t, env)
	waitDeliveryState(t, n2, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if got := len(rcv.Requests()); got != 2 {
		t.Errorf("receiver got %d requests, want 2 (the lost attempt and the redelivery)", got)
	}
}

// TestResend_SendsADeliveredDeliveryAgainWithItsWebhookID: a delivered
// delivery resent reaches the sink again with the same webhook-id, as a
// fresh series through its workflow; one still being retried is refused.
func TestResend_SendsADeliveredDeliveryAgainWithItsWebhookID(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	id := publish(t, n, newEvent("resend-1"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	d, err := n.deliveries.ResendDelivery(ctx(t), &heraldv1.ResendDeliveryRequest{Id: id})
	if err != nil || d.GetState() != heraldv1.DeliveryState_DELIVERY_STATE_RETRYING {
		t.Fatalf("ResendDelivery: %v, %v", d, err)
	}
	reqs := rcv.WaitFor(t, 2, wait)
	if a, b := reqs[0].Header.Get("webhook-id"), reqs[1].Header.Get("webhook-id"); a == "" || a != b {
		t.Errorf("webhook-ids %q and %q, want the same", a, b)
	}
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)

	failing := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusServiceUnavailable, nil })
	createSub(t, n, failing.URL, func(s *heraldv1.Subscription) { s.Types = []string{"com.example.order.paid"} })
	e := newEvent("resend-2")
	e.Type = "com.example.order.paid"
	retrying := publish(t, n, e)[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, retrying, heraldv1.DeliveryState_DELIVERY_STATE_RETRYING)
	if _, err := n.deliveries.ResendDelivery(ctx(t), &heraldv1.ResendDeliveryRequest{Id: retrying}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resending a delivery being retried: %v, want FailedPrecondition", err)
	}
}

// TestRetrying_TheAPIShowsTheNextAttemptAndTheUpdateSendsItNow: a retrying
// delivery's next attempt time comes from its workflow, and the
// retry-now Update (as sent from the Temporal UI) sends it at once.
func TestRetrying_TheAPIShowsTheNextAttemptAndTheUpdateSendsItNow(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusInternalServerError, nil))
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.RetryPolicy = &heraldv1.RetryPolicy{InitialInterval: durationpb.New(time.Hour), BackoffCoefficient: 1, MaximumInterval: durationpb.New(time.Hour)}
	})
	id := publish(t, n, newEvent("retry-now-1"))[0].GetDeliveryIds()[0]
	var d *heraldv1.Delivery
	heraldtest.Eventually(t, wait, "a next attempt time", func() bool {
		var err error
		d, err = n.deliveries.GetDelivery(ctx(t), &heraldv1.GetDeliveryRequest{Id: id})
		return err == nil && d.GetNextAttemptTime() != nil
	})
	if !d.GetNextAttemptTime().AsTime().After(time.Now()) || d.GetLastStatusCode() != 500 {
		t.Errorf("delivery %v: want a next attempt in the future after a 500", d)
	}
	h, err := temporalClient(t).UpdateWorkflow(ctx(t), client.UpdateWorkflowOptions{
		WorkflowID: workflows.WorkflowID(sub.GetId(), id), UpdateName: workflows.RetryNowUpdate,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatal(err)
	}
	var msg string
	if err := h.Get(ctx(t), &msg); err != nil {
		t.Fatal(err)
	}
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
}

// TestReplay_AWindowIsSentAgainAndSurvivesARestart: a replay sends every
// delivery of the window again (same webhook-ids), paced; the node that
// runs it stops half-way, and a node started on the same data finishes
// it; the CLI follows it to the end.
func TestReplay_AWindowIsSentAgainAndSurvivesARestart(t *testing.T) {
	path := tempStore(t)
	n := startNode(t, nodeConfig(t, path))
	rcv := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL)
	var ids []string
	for i := range 6 {
		id := publish(t, n, newEvent(fmt.Sprint("replay-", i)))[0].GetDeliveryIds()[0]
		ids = append(ids, id)
	}
	for _, id := range ids {
		waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
	op, err := n.deliveries.Replay(ctx(t), &heraldv1.ReplayRequest{
		SubscriptionId: sub.GetId(), StartTime: timestamppb.New(time.Now().Add(-time.Hour)), RatePerSecond: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	rcv.WaitFor(t, 8, wait) // two of six replayed
	n.Stop(ctx(t))

	n2 := startNode(t, nodeConfig(t, path))
	code, out, errs := herald(t, n2, "", "", "replay", "--id", op.GetId(), "-o", "json")
	if code != 0 || !strings.Contains(out, `"resent": 6`) || !strings.Contains(out, `"done": true`) {
		t.Fatalf("following the replay: %d %s\n%s", code, errs, out)
	}
	reqs := rcv.WaitFor(t, 12, wait)
	seen := map[string]int{}
	for _, r := range reqs {
		seen[r.Header.Get("webhook-id")]++
	}
	for _, id := range ids {
		if got := seen[strings.Replace(id, "dlv_", "msg_", 1)]; got < 2 {
			t.Errorf("%s was sent %d times, want at least twice", id, got)
		}
	}
}
