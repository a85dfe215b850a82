package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// GetDelivery implements herald.v1.DeliveryService.
func (s *Services) GetDelivery(ctx context.Context, req *heraldv1.GetDeliveryRequest) (*heraldv1.Delivery, error) {
	d, err := s.store.DeliveryGet(ctx, req.GetId())
	if err != nil {
		return nil, storeError(err, "delivery "+req.GetId())
	}
	return deliveryToProto(d), nil
}

// ListDeliveries implements herald.v1.DeliveryService.
func (s *Services) ListDeliveries(ctx context.Context, req *heraldv1.ListDeliveriesRequest) (*heraldv1.ListDeliveriesResponse, error) {
	limit := pageSize(req.GetPageSize())
	p := store.DeliveryListParams{
		SubscriptionID: req.GetSubscriptionId(),
		State:          deliveryStateFromProto(req.GetState()),
		Limit:          limit + 1,
		After:          req.GetPageToken(),
	}
	if t := req.GetCreateTimeStart(); t != nil {
		p.CreatedFrom = t.AsTime()
	}
	if t := req.GetCreateTimeEnd(); t != nil {
		p.CreatedTo = t.AsTime()
	}
	ds, err := s.store.DeliveryList(ctx, p)
	if err != nil {
		return nil, storeError(err, "deliveries")
	}
	resp := &heraldv1.ListDeliveriesResponse{}
	if len(ds) > limit {
		ds = ds[:limit]
		resp.NextPageToken = ds[limit-1].ID
	}
	for _, d := range ds {
		resp.Deliveries = append(resp.Deliveries, deliveryToProto(d))
	}
	return resp, nil
}

// ListAttempts implements herald.v1.DeliveryService.
func (s *Services) ListAttempts(ctx context.Context, req *heraldv1.ListAttemptsRequest) (*heraldv1.ListAttemptsResponse, error) {
	if _, err := s.store.DeliveryGet(ctx, req.GetDeliveryId()); err != nil {
		return nil, storeError(err, "delivery "+req.GetDeliveryId())
	}
	as, err := s.store.AttemptList(ctx, req.GetDeliveryId())
	if err != nil {
		return nil, storeError(err, "attempts")
	}
	resp := &heraldv1.ListAttemptsResponse{}
	for _, a := range as {
		resp.Attempts = append(resp.Attempts, attemptToProto(a))
	}
	return resp, nil
}

// RedriveDelivery implements herald.v1.DeliveryService.
func (s *Services) RedriveDelivery(ctx context.Context, req *heraldv1.RedriveDeliveryRequest) (*heraldv1.Delivery, error) {
	d, err := s.store.DeliveryGet(ctx, req.GetId())
	if err != nil {
		return nil, storeError(err, "delivery "+req.GetId())
	}
	if err := s.redrive(ctx, d); err != nil {
		return nil, err
	}
	d.State = store.DeliveryRetrying
	return deliveryToProto(d), nil
}

// redrive hands a dead delivery back to its workflow and records it as
// retrying.
func (s *Services) redrive(ctx context.Context, d *store.Delivery) error {
	update, err := lifecycle.Redriven(d)
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	sub, err := s.store.SubscriptionGet(ctx, d.SubscriptionID)
	if err != nil {
		return storeError(err, "subscription "+d.SubscriptionID)
	}
	if sub.State != store.SubscriptionActive {
		return status.Errorf(codes.FailedPrecondition, "subscription %s is disabled (%s); enable it before redriving", sub.ID, sub.StateReason)
	}
	err = s.workflows.Redrive(ctx, workflows.DeliveryInput{
		DeliveryID:     d.ID,
		SubscriptionID: d.SubscriptionID,
		EventType:      d.EventType,
		SinkHost:       delivery.SinkHost(sub.Sink),
		SeriesStart:    time.Now(),
		TotalAttempts:  d.Attempts,
		LastStatus:     d.LastStatus,
		Policy:         sub.RetryPolicy,
	})
	if err != nil {
		return status.Errorf(codes.Unavailable, "redrive: %v", err)
	}
	err = s.store.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{update})
	if err != nil {
		return storeError(err, "delivery "+d.ID)
	}
	return nil
}

// RedriveDeadLetters implements herald.v1.DeliveryService. It redrives at
// most rate_per_second deliveries a second and returns when all are
// redriven or the call's deadline is near.
func (s *Services) RedriveDeadLetters(ctx context.Context, req *heraldv1.RedriveDeadLettersRequest) (*heraldv1.RedriveDeadLettersResponse, error) {
	if req.GetSubscriptionId() == "" {
		return nil, invalidArgument("subscription_id", "required")
	}
	if r := req.GetRatePerSecond(); r < 0 || r > policy.MaxRedriveRate {
		return nil, invalidArgument("rate_per_second", fmt.Sprintf("must be between 0 (the default, 10) and %d", policy.MaxRedriveRate))
	}
	rate := int(req.GetRatePerSecond())
	if rate == 0 {
		rate = 10
	}
	if _, err := s.store.SubscriptionGet(ctx, req.GetSubscriptionId()); err != nil {
		return nil, storeError(err, "subscription "+req.GetSubscriptionId())
	}
	p := store.DeliveryListParams{SubscriptionID: req.GetSubscriptionId(), State: store.DeliveryDead, Limit: 500}
	if t := req.GetCreateTimeStart(); t != nil {
		p.CreatedFrom = t.AsTime()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	resp := &heraldv1.RedriveDeadLettersResponse{}
	for {
		ds, err := s.store.DeliveryList(ctx, p)
		if err != nil {
			return resp, storeError(err, "deliveries")
		}
		for _, d := range ds {
			select {
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			case <-tick.C:
			}
			if err := s.redrive(ctx, d); err != nil {
				return nil, err
			}
			resp.Redriven++
		}
		if len(ds) < p.Limit {
			return resp, nil
		}
		p.After = ds[len(ds)-1].ID
	}
}
