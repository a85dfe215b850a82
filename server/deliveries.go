package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/redrive"
	"github.com/heraldhq/herald/internal/store"
)

// GetDelivery implements herald.v1.DeliveryService.
func (s *Services) GetDelivery(ctx context.Context, req *heraldv1.GetDeliveryRequest) (*heraldv1.Delivery, error) {
	d, err := s.ownedDelivery(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	out := deliveryToProto(d)
	if d.State == store.DeliveryRetrying && s.workflows != nil {
		// Best effort: its workflow knows when the next attempt is due.
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if st, err := s.workflows.Status(qctx, d.SubscriptionID, d.ID); err == nil && !st.NextAttempt.IsZero() {
			out.NextAttemptTime = timestamppb.New(st.NextAttempt)
		}
	}
	return out, nil
}

// ownedDelivery returns a delivery the caller may see: one of a
// subscription of its tenant. A tenant-bound caller sees no delivery of
// a deleted subscription.
func (s *Services) ownedDelivery(ctx context.Context, id string) (*store.Delivery, error) {
	d, err := s.store.DeliveryGet(ctx, id)
	if err != nil {
		return nil, storeError(err, "delivery "+id)
	}
	p := auth.FromContext(ctx)
	if p.Tenant == "" {
		return d, nil
	}
	if en, ok := s.catalog.Get(d.SubscriptionID); !ok || !p.Sees(en.Subscription.Tenant) {
		return nil, notFound("delivery " + id)
	}
	return d, nil
}

// maxFilterTypes is the most event types a list call may filter by.
const maxFilterTypes = 100

// checkTypes refuses a list of event types to filter by that is too long.
func checkTypes(field string, types []string) error {
	if len(types) > maxFilterTypes {
		return invalidArgument(field, fmt.Sprintf("%d types, at most %d", len(types), maxFilterTypes))
	}
	return nil
}

// ListDeliveries implements herald.v1.DeliveryService.
func (s *Services) ListDeliveries(ctx context.Context, req *heraldv1.ListDeliveriesRequest) (*heraldv1.ListDeliveriesResponse, error) {
	limit := pageSize(req.GetPageSize())
	var ofTenant []string
	if caller := auth.FromContext(ctx); caller.Tenant != "" {
		if sub := req.GetSubscriptionId(); sub != "" {
			if _, err := s.owned(ctx, sub); err != nil {
				return nil, err
			}
		} else {
			ofTenant = s.catalog.Tenant(caller.Tenant)
		}
	}
	if h := req.GetSinkHost(); h != "" {
		onHost := s.catalog.OnSinkHost(h)
		if ofTenant != nil {
			onHost = slices.DeleteFunc(onHost, func(id string) bool { return !slices.Contains(ofTenant, id) })
		}
		ofTenant = onHost
	}
	class, ok := statusClasses[req.GetLastStatusClass()]
	if !ok {
		return nil, invalidArgument("last_status_class", fmt.Sprintf("unknown value %d", req.GetLastStatusClass()))
	}
	if err := checkTypes("event_types", req.GetEventTypes()); err != nil {
		return nil, err
	}
	p := store.DeliveryListParams{
		SubscriptionIDs: ofTenant,
		SubscriptionID:  req.GetSubscriptionId(),
		State:           deliveryStateFromProto(req.GetState()),
		EventTypes:      req.GetEventTypes(),
		EventSource:     req.GetEventSource(),
		EventID:         req.GetEventId(),
		LastStatus:      class,
		Limit:           limit + 1,
		After:           req.GetPageToken(),
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
	if _, err := s.ownedDelivery(ctx, req.GetDeliveryId()); err != nil {
		return nil, err
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
	d, err := s.ownedDelivery(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := s.redriver.One(ctx, d); err != nil {
		return nil, redriveError(err)
	}
	d.State = store.DeliveryRetrying
	return deliveryToProto(d), nil
}

// ResendDelivery implements herald.v1.DeliveryService.
func (s *Services) ResendDelivery(ctx context.Context, req *heraldv1.ResendDeliveryRequest) (*heraldv1.Delivery, error) {
	d, err := s.ownedDelivery(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := s.redriver.Resend(ctx, d); err != nil {
		return nil, redriveError(err)
	}
	d.State = store.DeliveryRetrying
	return deliveryToProto(d), nil
}

// RedriveDeadLetters implements herald.v1.DeliveryService. It redrives at
// most rate_per_second deliveries a second and returns when all are
// redriven or the call's deadline is near.
func (s *Services) RedriveDeadLetters(ctx context.Context, req *heraldv1.RedriveDeadLettersRequest) (*heraldv1.RedriveDeadLettersResponse, error) {
	if req.GetSubscriptionId() == "" {
		return nil, invalidArgument("subscription_id", "required")
	}
	if _, err := s.owned(ctx, req.GetSubscriptionId()); err != nil {
		return nil, err
	}
	if r := req.GetRatePerSecond(); r < 0 || r > policy.MaxRedriveRate {
		return nil, invalidArgument("rate_per_second", fmt.Sprintf("must be between 0 (the default, %d) and %d", policy.DefaultRedriveRate, policy.MaxRedriveRate))
	}
	rate := int(req.GetRatePerSecond())
	if rate == 0 {
		rate = policy.DefaultRedriveRate
	}
	var since time.Time
	if t := req.GetCreateTimeStart(); t != nil {
		since = t.AsTime()
	}
	n, err := s.redriver.DeadLetters(ctx, req.GetSubscriptionId(), since, rate)
	if err != nil {
		return nil, redriveError(err)
	}
	return &heraldv1.RedriveDeadLettersResponse{Redriven: int32(n)}, nil
}

// redriveError maps a redrive's error to a gRPC status.
func redriveError(err error) error {
	switch {
	case errors.Is(err, lifecycle.ErrIllegal), errors.Is(err, redrive.ErrInactive):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, redrive.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "store: %v", err)
}
