package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/heraldhq/herald/internal/handshake"
)

type handshakeRun struct {
	validated   []ValidatedInput
	unvalidated []UnvalidatedInput
}

func newHandshakeEnv(t *testing.T, answer ValidateResult, answerErr error) (*testsuite.TestWorkflowEnvironment, *handshakeRun) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Handshake, workflow.RegisterOptions{Name: HandshakeWorkflowName})
	env.RegisterActivity(&Activities{})
	r := &handshakeRun{}
	env.OnActivity(acts.Validate, mock.Anything, mock.Anything).Return(answer, answerErr)
	env.OnActivity(acts.MarkValidated, mock.Anything, mock.Anything).Return(func(_ context.Context, in ValidatedInput) error {
		r.validated = append(r.validated, in)
		return nil
	})
	env.OnActivity(acts.MarkUnvalidated, mock.Anything, mock.Anything).Return(func(_ context.Context, in UnvalidatedInput) error {
		r.unvalidated = append(r.unvalidated, in)
		return nil
	})
	return env, r
}

var handshakeIn = HandshakeInput{SubscriptionID: "sub_1", Origin: "herald.test", CallbackBase: "http://herald.test/v1/validation"}

func TestHandshake_GrantedActivatesWithTheAllowedRate(t *testing.T) {
	env, r := newHandshakeEnv(t, ValidateResult{Outcome: handshake.Granted.String(), AllowedRate: 120}, nil)
	env.ExecuteWorkflow(Handshake, handshakeIn)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(r.validated) != 1 || r.validated[0].AllowedRate != 120 || len(r.unvalidated) != 0 {
		t.Errorf("validated %v unvalidated %v", r.validated, r.unvalidated)
	}
}

func TestHandshake_RefusedStaysPendingWithTheReason(t *testing.T) {
	env, r := newHandshakeEnv(t, ValidateResult{Outcome: handshake.Refused.String(), Reason: "WebHook-Allowed-Origin missing"}, nil)
	env.ExecuteWorkflow(Handshake, handshakeIn)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(r.validated) != 0 || len(r.unvalidated) != 1 || !strings.Contains(r.unvalidated[0].Reason, "WebHook-Allowed-Origin missing") {
		t.Errorf("validated %v unvalidated %v", r.validated, r.unvalidated)
	}
}

func TestHandshake_CallbackGrantActivates(t *testing.T) {
	env, r := newHandshakeEnv(t, ValidateResult{Outcome: handshake.Pending.String()}, nil)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(GrantSignal, GrantInput{Rate: 30}) }, 10*time.Minute)
	env.ExecuteWorkflow(Handshake, handshakeIn)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(r.validated) != 1 || r.validated[0].AllowedRate != 30 {
		t.Errorf("validated %v", r.validated)
	}
}

func TestHandshake_NoCallbackWithinTheTimeoutStaysPending(t *testing.T) {
	env, r := newHandshakeEnv(t, ValidateResult{Outcome: handshake.Pending.String()}, nil)
	env.ExecuteWorkflow(Handshake, handshakeIn)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(r.validated) != 0 || len(r.unvalidated) != 1 {
		t.Errorf("validated %v unvalidated %v", r.validated, r.unvalidated)
	}
}

func TestHandshake_UnreachableSinkIsRecorded(t *testing.T) {
	env, r := newHandshakeEnv(t, ValidateResult{}, errors.New("connection refused"))
	env.ExecuteWorkflow(Handshake, handshakeIn)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(r.unvalidated) != 1 || !strings.Contains(r.unvalidated[0].Reason, "connection refused") {
		t.Errorf("unvalidated %v", r.unvalidated)
	}
}
