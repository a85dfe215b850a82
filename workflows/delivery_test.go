package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/heraldhq/herald/internal/policy"
)

// script drives the mocked Attempt activity: each call returns the next
// result (the last one repeats) and records when it ran.
type script struct {
	mu      sync.Mutex
	env     *testsuite.TestWorkflowEnvironment
	results []AttemptResult
	calls   []time.Time
	numbers []int
	dead    []MarkDeadInput
	disable []DisableInput
	// keepScript makes attempts after a dead letter follow results too;
	// by default they deliver, so that a redrive ends the workflow.
	keepScript bool
}

func (s *script) attempt(_ context.Context, in AttemptInput) (AttemptResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, s.env.Now())
	s.numbers = append(s.numbers, in.Number)
	if len(s.dead) > 0 && !s.keepScript {
		return delivered, nil
	}
	i := min(len(s.calls)-1, len(s.results)-1)
	return s.results[i], nil
}

func newEnv(t *testing.T, results ...AttemptResult) (*testsuite.TestWorkflowEnvironment, *script) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Delivery, workflowRegisterOptions())
	env.RegisterActivity(&Activities{})
	s := &script{env: env, results: results}
	env.OnActivity(acts.Attempt, mock.Anything, mock.Anything).Return(s.attempt)
	env.OnActivity(acts.MarkDead, mock.Anything, mock.Anything).Return(func(_ context.Context, in MarkDeadInput) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.dead = append(s.dead, in)
		return nil
	})
	env.OnActivity(acts.DisableSubscription, mock.Anything, mock.Anything).Return(func(_ context.Context, in DisableInput) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.disable = append(s.disable, in)
		return nil
	})
	env.OnActivity(acts.MarkRetrying, mock.Anything, mock.Anything).Return(nil)
	return env, s
}

// failedFirst is the input the dispatcher gives after a failed first attempt.
func failedFirst(env *testsuite.TestWorkflowEnvironment, status int, pol policy.Retry) DeliveryInput {
	return DeliveryInput{
		DeliveryID:     "dlv_1",
		SubscriptionID: "sub_1",
		SeriesStart:    env.Now(),
		Attempts:       1,
		TotalAttempts:  1,
		LastOutcome:    pol.WithDefaults().Classify(status),
		LastStatus:     status,
		Policy:         pol,
	}
}

var (
	fail500   = AttemptResult{Outcome: policy.Retryable, StatusCode: 500}
	delivered = AttemptResult{Outcome: policy.Delivered, StatusCode: 200}
	held      = AttemptResult{Held: true}
)

// redriveWhenDead sends the redrive signal once the workflow has parked.
func redriveWhenDead(env *testsuite.TestWorkflowEnvironment, after time.Duration) {
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(RedriveSignal, nil) }, after)
}

func TestDelivery_RetriesUntilDelivered(t *testing.T) {
	env, s := newEnv(t, fail500, fail500, delivered)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, policy.Retry{}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res DeliveryResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(s.calls) != 3 || res.Attempts != 4 {
		t.Fatalf("attempt calls = %d, total attempts = %d; want 3 and 4", len(s.calls), res.Attempts)
	}
	if want := []int{2, 3, 4}; !equalInts(s.numbers, want) {
		t.Errorf("attempt numbers = %v, want %v", s.numbers, want)
	}
	if len(s.dead) != 0 {
		t.Errorf("dead-lettered %v", s.dead)
	}
}

func TestDelivery_BackoffIsFullJitterBelowTheCap(t *testing.T) {
	pol := policy.Retry{InitialInterval: 10 * time.Second, BackoffCoefficient: 3, MaximumInterval: time.Hour, MaximumAttempts: 6, MaximumAge: 30 * 24 * time.Hour}
	env, s := newEnv(t, fail500)
	start := env.Now()
	redriveWhenDead(env, 365*24*time.Hour) // far beyond the series; ends the test
	s.results = []AttemptResult{fail500, fail500, fail500, fail500, fail500, delivered}
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.dead) != 1 || !strings.Contains(s.dead[0].Reason, "6 attempts failed") {
		t.Fatalf("dead letters = %+v, want one after 6 attempts", s.dead)
	}
	// Attempts 2..6 follow waits 1..5, each in [0, cap(n)].
	prev := start
	full := pol.WithDefaults()
	for i, at := range s.calls[:5] {
		wait := at.Sub(prev)
		if c := full.Cap(i + 1); wait < 0 || wait > c {
			t.Errorf("wait %d = %s, want within [0, %s]", i+1, wait, c)
		}
		prev = at
	}
}

func TestDelivery_RetryAfterRaisesTheWait(t *testing.T) {
	for _, status := range []int{429, 503} {
		pol := policy.Retry{InitialInterval: time.Second, MaximumInterval: time.Second}
		env, s := newEnv(t, delivered)
		in := failedFirst(env, status, pol)
		in.RetryAfter = 90 * time.Second
		start := env.Now()
		env.ExecuteWorkflow(Delivery, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if got := s.calls[0].Sub(start); got < 90*time.Second {
			t.Errorf("status %d: retried after %s, want at least the Retry-After of 90s", status, got)
		}
	}
}

func TestDelivery_PermanentStatusDeadLettersAtOnce(t *testing.T) {
	for _, status := range []int{301, 400, 401, 403, 413, 415, 422} {
		env, s := newEnv(t, delivered)
		redriveWhenDead(env, time.Hour)
		env.ExecuteWorkflow(Delivery, failedFirst(env, status, policy.Retry{}))
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if len(s.dead) != 1 || !strings.Contains(s.dead[0].Reason, "permanent") {
			t.Errorf("status %d: dead letters = %+v, want one permanent", status, s.dead)
		}
		// The redrive's attempt is the only one.
		if len(s.calls) != 1 {
			t.Errorf("status %d: %d attempts, want only the redrive's", status, len(s.calls))
		}
	}
}

func TestDelivery_PermanentOverrideRetries(t *testing.T) {
	pol := policy.Retry{RetryableStatus: []int{400}}
	env, s := newEnv(t, delivered)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 400, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.dead) != 0 || len(s.calls) != 1 {
		t.Errorf("dead = %v, attempts = %d; want a retry of the 400", s.dead, len(s.calls))
	}
}

func TestDelivery_GoneDisablesTheSubscriptionAndHoldsTheDelivery(t *testing.T) {
	env, s := newEnv(t, held)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 410, policy.Retry{}))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.disable) != 1 || s.disable[0].SubscriptionID != "sub_1" {
		t.Errorf("disabled = %+v, want sub_1", s.disable)
	}
	if len(s.calls) != 1 || len(s.dead) != 0 {
		t.Errorf("%d attempts, dead letters %+v; want one attempt, which holds it, and no dead letter", len(s.calls), s.dead)
	}
}

func TestDelivery_HeldEndsTheWorkflow(t *testing.T) {
	pol := policy.Retry{InitialInterval: time.Second, MaximumAttempts: 5}
	env, s := newEnv(t, fail500, held)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if !env.IsWorkflowCompleted() {
		t.Fatal("the workflow of a held delivery did not end")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res DeliveryResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(s.calls) != 2 || len(s.dead) != 0 || res.Attempts != 2 {
		t.Errorf("%d calls, %d attempts, dead letters %+v; want 2 calls (1 more attempt, then held), no dead letter", len(s.calls), res.Attempts, s.dead)
	}
}

func TestDelivery_MaximumAgeEndsTheSeries(t *testing.T) {
	pol := policy.Retry{InitialInterval: 40 * time.Minute, BackoffCoefficient: 1, MaximumAttempts: 1000, MaximumAge: 2 * time.Hour}
	env, s := newEnv(t, fail500)
	start := env.Now()
	redriveWhenDead(env, 24*time.Hour)
	s.results = []AttemptResult{fail500}
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.dead) != 1 || !strings.Contains(s.dead[0].Reason, "maximum age") {
		t.Fatalf("dead letters = %+v, want one for maximum age", s.dead)
	}
	for _, at := range s.calls[:len(s.calls)-1] { // the last call is the redrive's
		if at.Sub(start) > 2*time.Hour {
			t.Errorf("attempt at +%s, after the maximum age", at.Sub(start))
		}
	}
}

func TestDelivery_PausedSinkWaitsWithoutSpendingAnAttempt(t *testing.T) {
	pol := policy.Retry{InitialInterval: time.Second, MaximumInterval: time.Second, MaximumAttempts: 2}
	env, s := newEnv(t)
	pausedUntil := env.Now().Add(10 * time.Minute)
	s.results = []AttemptResult{{PausedUntil: pausedUntil}, delivered}
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.calls) != 2 || s.calls[1].Before(pausedUntil) {
		t.Fatalf("calls = %v, want a second call after %v", s.calls, pausedUntil)
	}
	if len(s.dead) != 0 {
		t.Errorf("dead-lettered although only 1 of 2 attempts was spent: %+v", s.dead)
	}
}

func TestDelivery_RedriveStartsAFreshSeries(t *testing.T) {
	pol := policy.Retry{InitialInterval: time.Second, MaximumAttempts: 2}
	env, s := newEnv(t)
	s.keepScript = true
	s.results = []AttemptResult{fail500, fail500, delivered}
	// First series: attempt 1 (dispatcher) and 2 fail -> dead. Redrive:
	// attempts 3 and 4 (a fresh series of 2), the second delivers.
	redriveWhenDead(env, time.Hour)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.dead) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(s.dead))
	}
	if want := []int{2, 3, 4}; !equalInts(s.numbers, want) {
		t.Errorf("attempt numbers = %v, want %v", s.numbers, want)
	}
}

func TestDelivery_StartedAsRedriveAttemptsAtOnce(t *testing.T) {
	env, s := newEnv(t, delivered)
	start := env.Now()
	env.ExecuteWorkflow(Delivery, DeliveryInput{
		DeliveryID: "dlv_1", SubscriptionID: "sub_1", TotalAttempts: 3, Redrive: true, SeriesStart: start,
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(s.calls) != 1 || s.calls[0].Sub(start) > time.Second || s.numbers[0] != 4 {
		t.Errorf("calls = %v numbers = %v, want one immediate attempt number 4", s.calls, s.numbers)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDelivery_LongHistoryContinuesAsNewOnRedrive(t *testing.T) {
	old := redrivesPerRun
	redrivesPerRun = 1
	t.Cleanup(func() { redrivesPerRun = old })
	env, s := newEnv(t)
	s.keepScript = true
	s.results = []AttemptResult{{Outcome: policy.Permanent, StatusCode: 400}}
	redriveWhenDead(env, time.Hour)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, policy.Retry{}))
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("err = %v, want continue-as-new after the redrive", err)
	}
	var next DeliveryInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if !next.Redrive || next.TotalAttempts != 2 || next.DeliveryID != "dlv_1" {
		t.Errorf("next run input = %+v, want a redrive after 2 attempts", next)
	}
}

// updateCallbacks records an Update's outcome in the test environment.
type updateCallbacks struct {
	rejected, completed error
	accepted            bool
	done                bool
}

func (u *updateCallbacks) Accept()                   { u.accepted = true }
func (u *updateCallbacks) Reject(err error)          { u.rejected, u.done = err, true }
func (u *updateCallbacks) Complete(_ any, err error) { u.completed, u.done = err, true }

// TestDelivery_RetryNowUpdateEndsTheWait: the retry-now Update sends the
// next attempt at once; it is refused while no wait is under way, and the
// redrive Update is refused while the delivery is being retried.
func TestDelivery_RetryNowUpdateEndsTheWait(t *testing.T) {
	pol := policy.Retry{InitialInterval: time.Hour, BackoffCoefficient: 1, MaximumInterval: time.Hour, MaximumAttempts: 3, MaximumAge: 48 * time.Hour}
	env, s := newEnv(t, delivered)
	start := env.Now()
	var redrive, retryNow updateCallbacks
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(RedriveUpdate, "redrive-1", &redrive)
		env.UpdateWorkflow(RetryNowUpdate, "retry-now-1", &retryNow)
	}, time.Millisecond) // the drawn wait is below an hour, and below a millisecond once in 3.6 million
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if redrive.rejected == nil || !strings.Contains(redrive.rejected.Error(), "not dead-lettered") {
		t.Errorf("redrive while retrying: rejected %v, want refused", redrive.rejected)
	}
	if !retryNow.accepted || retryNow.completed != nil {
		t.Fatalf("retry-now: accepted %v, %v", retryNow.accepted, retryNow.completed)
	}
	if len(s.calls) != 1 || s.calls[0].Sub(start) > 2*time.Second {
		t.Errorf("the attempt ran at %v after the start, want right after the Update", s.calls[0].Sub(start))
	}
}

// TestDelivery_RedriveUpdateStartsAFreshSeries: a dead-lettered delivery
// is redriven by the Update as by the signal; retry-now is refused while
// it is dead.
func TestDelivery_RedriveUpdateStartsAFreshSeries(t *testing.T) {
	pol := policy.Retry{InitialInterval: time.Second, MaximumAttempts: 2}
	env, s := newEnv(t, fail500)
	var retryNow, redrive updateCallbacks
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(RetryNowUpdate, "retry-now-1", &retryNow)
		env.UpdateWorkflow(RedriveUpdate, "redrive-1", &redrive)
	}, time.Hour)
	env.ExecuteWorkflow(Delivery, failedFirst(env, 500, pol))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if retryNow.rejected == nil {
		t.Error("retry-now on a dead letter was not refused")
	}
	if !redrive.accepted || len(s.dead) != 1 || len(s.calls) != 2 {
		t.Errorf("redrive: accepted %v, dead letters %d, attempts %d; want accepted, 1, 2 (the last after the redrive)", redrive.accepted, len(s.dead), len(s.calls))
	}
}
