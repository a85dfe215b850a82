package workflows

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Starter hands deliveries to their workflows.
type Starter struct {
	Client    client.Client
	TaskQueue string // default TaskQueue
}

func (s *Starter) options(in DeliveryInput) client.StartWorkflowOptions {
	tq := s.TaskQueue
	if tq == "" {
		tq = TaskQueue
	}
	return client.StartWorkflowOptions{
		ID:                       WorkflowID(in.SubscriptionID, in.DeliveryID),
		TaskQueue:                tq,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		// What the Temporal UI shows in the workflow list: where, what and
		// which delivery (the sink's host only: a URL's path may carry a
		// credential).
		StaticSummary: fmt.Sprintf("POST to %s: %s (%s)", in.SinkHost, in.EventType, in.DeliveryID),
		StaticDetails: fmt.Sprintf("Delivery %s of subscription %s. `herald deliveries get %s` shows it, "+
			"`herald deliveries attempts %s` its attempts; the Updates %q, %q and %q act on it.",
			in.DeliveryID, in.SubscriptionID, in.DeliveryID, in.DeliveryID, RetryNowUpdate, RedriveUpdate, ResendUpdate),
		// The node that starts a delivery's workflow runs a worker on the
		// same client: eager start hands it the first task directly
		// (measured about 2x workflows/s on SQLite, temporal.md).
		EnableEagerStart: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrSubscriptionID.ValueSet(in.SubscriptionID),
			AttrSinkHost.ValueSet(in.SinkHost),
			AttrEventType.ValueSet(in.EventType),
			AttrDeliveryState.ValueSet(StateRetrying),
			AttrAttempts.ValueSet(int64(max(in.TotalAttempts, in.Attempts))),
			AttrLastStatus.ValueSet(int64(in.LastStatus)),
		),
	}
}

// Start starts a delivery's workflow. Starting one that is running already
// does nothing, so a hand-off may be repeated safely.
func (s *Starter) Start(ctx context.Context, in DeliveryInput) error {
	if _, err := s.Client.ExecuteWorkflow(ctx, s.options(in), DeliveryWorkflowName, in); err != nil {
		return fmt.Errorf("start delivery workflow: %w", err)
	}
	return nil
}

// Redrive signals a dead-lettered delivery's workflow to start a fresh
// series of attempts, starting the workflow if it is not running.
func (s *Starter) Redrive(ctx context.Context, in DeliveryInput) error {
	in.Redrive = true
	opts := s.options(in)
	opts.TypedSearchAttributes = temporal.NewSearchAttributes(
		AttrSubscriptionID.ValueSet(in.SubscriptionID),
		AttrSinkHost.ValueSet(in.SinkHost),
		AttrEventType.ValueSet(in.EventType),
		AttrDeliveryState.ValueSet(StateRedriving),
		AttrAttempts.ValueSet(int64(in.TotalAttempts)),
		AttrLastStatus.ValueSet(int64(in.LastStatus)),
	)
	if _, err := s.Client.SignalWithStartWorkflow(ctx, opts.ID, RedriveSignal, nil, opts, DeliveryWorkflowName, in); err != nil {
		return fmt.Errorf("redrive delivery workflow: %w", err)
	}
	return nil
}

// Status asks a delivery's running workflow how it stands (StatusQuery).
func (s *Starter) Status(ctx context.Context, subscriptionID, deliveryID string) (DeliveryStatus, error) {
	var st DeliveryStatus
	v, err := s.Client.QueryWorkflow(ctx, WorkflowID(subscriptionID, deliveryID), "", StatusQuery)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// StartHandshake starts a subscription's validation handshake, replacing
// one that is under way (e.g. for a sink that changed).
func (s *Starter) StartHandshake(ctx context.Context, in HandshakeInput) error {
	tq := s.TaskQueue
	if tq == "" {
		tq = TaskQueue
	}
	_, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       HandshakeWorkflowID(in.SubscriptionID),
		TaskQueue:                tq,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(AttrSubscriptionID.ValueSet(in.SubscriptionID)),
	}, HandshakeWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start handshake workflow: %w", err)
	}
	return nil
}

// Grant passes an asynchronous grant to a subscription's waiting handshake.
func (s *Starter) Grant(ctx context.Context, subscriptionID string, g GrantInput) error {
	return s.Client.SignalWorkflow(ctx, HandshakeWorkflowID(subscriptionID), "", GrantSignal, g)
}

// StartReplay starts a replay's workflow.
func (s *Starter) StartReplay(ctx context.Context, in ReplayInput) error {
	tq := s.TaskQueue
	if tq == "" {
		tq = TaskQueue
	}
	_, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: ReplayWorkflowID(in.ReplayID), TaskQueue: tq,
		StaticSummary:         fmt.Sprintf("replay of %s: %s to %s", in.SubscriptionID, in.From.UTC().Format(time.RFC3339), in.To.UTC().Format(time.RFC3339)),
		TypedSearchAttributes: temporal.NewSearchAttributes(AttrSubscriptionID.ValueSet(in.SubscriptionID)),
	}, ReplayWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start replay workflow: %w", err)
	}
	return nil
}

// ReplayProgress asks a replay how far it is: its progress query while it
// runs, its result once it ended.
func (s *Starter) ReplayProgress(ctx context.Context, replayID string) (ReplayProgress, error) {
	var p ReplayProgress
	run := s.Client.GetWorkflow(ctx, ReplayWorkflowID(replayID), "")
	desc, err := s.Client.DescribeWorkflowExecution(ctx, ReplayWorkflowID(replayID), "")
	if err != nil {
		return p, err
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		v, err := s.Client.QueryWorkflow(ctx, ReplayWorkflowID(replayID), "", ProgressQuery)
		if err != nil {
			return p, err
		}
		return p, v.Get(&p)
	}
	err = run.Get(ctx, &p)
	return p, err
}

// Register registers the workflows and activities on a worker.
func Register(w worker.Registry, a *Activities) {
	w.RegisterWorkflowWithOptions(Delivery, workflowRegisterOptions())
	w.RegisterWorkflowWithOptions(Handshake, workflow.RegisterOptions{Name: HandshakeWorkflowName})
	w.RegisterWorkflowWithOptions(Replay, workflow.RegisterOptions{Name: ReplayWorkflowName})
	w.RegisterActivity(a)
}

func workflowRegisterOptions() workflow.RegisterOptions {
	return workflow.RegisterOptions{Name: DeliveryWorkflowName}
}
