package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// Replays starts and follows replays (workflows.Starter).
type Replays interface {
	StartReplay(ctx context.Context, in workflows.ReplayInput) error
	ReplayProgress(ctx context.Context, replayID string) (workflows.ReplayProgress, error)
}

// Replay implements herald.v1.DeliveryService.
func (s *Services) Replay(ctx context.Context, req *heraldv1.ReplayRequest) (*heraldv1.ReplayOperation, error) {
	sub, err := s.owned(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	if sub.State != store.SubscriptionActive {
		return nil, status.Errorf(codes.FailedPrecondition, "subscription %s is %s (%s); enable it before replaying", sub.ID, sub.State, sub.StateReason)
	}
	if req.GetStartTime() == nil {
		return nil, invalidArgument("start_time", "required")
	}
	in := workflows.ReplayInput{
		ReplayID: id.New(id.Replay), SubscriptionID: sub.ID,
		From: req.GetStartTime().AsTime(), To: time.Now(), PerSecond: int(req.GetRatePerSecond()),
	}
	if t := req.GetEndTime(); t != nil {
		in.To = t.AsTime()
	}
	if !in.To.After(in.From) {
		return nil, invalidArgument("end_time", "must be after start_time")
	}
	if in.PerSecond < 0 || in.PerSecond > policy.MaxRedriveRate {
		return nil, invalidArgument("rate_per_second", fmt.Sprintf("must be between 0 (the default, %d) and %d", policy.DefaultRedriveRate, policy.MaxRedriveRate))
	}
	if in.PerSecond == 0 {
		in.PerSecond = policy.DefaultRedriveRate
	}
	for _, st := range req.GetStates() {
		switch st {
		case heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED, heraldv1.DeliveryState_DELIVERY_STATE_DEAD:
			in.States = append(in.States, deliveryStateFromProto(st))
		default:
			return nil, invalidArgument("states", "only DELIVERY_STATE_DELIVERED and DELIVERY_STATE_DEAD can be replayed")
		}
	}
	if len(in.States) == 0 {
		in.States = []store.DeliveryState{store.DeliveryDelivered, store.DeliveryDead}
	}
	r, ok := s.workflows.(Replays)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this node runs no replays")
	}
	if err := r.StartReplay(ctx, in); err != nil {
		return nil, status.Errorf(codes.Unavailable, "start the replay: %v", err)
	}
	return &heraldv1.ReplayOperation{Id: in.ReplayID, SubscriptionId: sub.ID, WorkflowId: workflows.ReplayWorkflowID(in.ReplayID)}, nil
}

// GetReplay implements herald.v1.DeliveryService.
func (s *Services) GetReplay(ctx context.Context, req *heraldv1.GetReplayRequest) (*heraldv1.ReplayOperation, error) {
	if !strings.HasPrefix(req.GetId(), id.Replay) {
		return nil, invalidArgument("id", "not a replay id (rpl_...)")
	}
	r, ok := s.workflows.(Replays)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this node runs no replays")
	}
	p, err := r.ReplayProgress(ctx, req.GetId())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "replay %s: %v", req.GetId(), err)
	}
	if _, err := s.owned(ctx, p.SubscriptionID); err != nil {
		return nil, notFound("replay " + req.GetId())
	}
	return &heraldv1.ReplayOperation{Id: req.GetId(), SubscriptionId: p.SubscriptionID, WorkflowId: workflows.ReplayWorkflowID(req.GetId()),
		Done: p.Done, Resent: int32(p.Resent), Skipped: int32(p.Skipped), Examined: int32(p.Examined)}, nil
}
