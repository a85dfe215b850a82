package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

// ListEvents implements herald.v1.EventService.
func (s *Services) ListEvents(ctx context.Context, req *heraldv1.ListEventsRequest) (*heraldv1.ListEventsResponse, error) {
	if req.GetSubscriptionId() == "" {
		return nil, invalidArgument("subscription_id", "required")
	}
	if err := checkTypes("types", req.GetTypes()); err != nil {
		return nil, err
	}
	if _, err := s.owned(ctx, req.GetSubscriptionId()); err != nil {
		return nil, err
	}
	p := store.EventListParams{
		SubscriptionID: req.GetSubscriptionId(),
		After:          req.GetAfterCursor(),
		Types:          req.GetTypes(),
		Limit:          pageSize(req.GetPageSize()),
		// Not what was stored in the last seconds: a transaction that
		// commits late must not fall behind the cursor.
		CreatedTo: time.Now().Add(-policy.EventListSettle),
	}
	if t := req.GetStartTime(); t != nil {
		p.CreatedFrom = t.AsTime()
	}
	if t := req.GetEndTime(); t != nil && t.AsTime().Before(p.CreatedTo) {
		p.CreatedTo = t.AsTime()
	}
	rows, err := s.store.EventList(ctx, p)
	if err != nil {
		return nil, storeError(err, "events")
	}
	resp := &heraldv1.ListEventsResponse{NextCursor: req.GetAfterCursor()}
	for _, r := range rows {
		e, err := eventToProto(&r.Event)
		if err != nil {
			return nil, err
		}
		resp.Events = append(resp.Events, &heraldv1.SubscribedEvent{
			Event: e, DeliveryId: r.Delivery.ID, DeliveryState: deliveryStates[r.Delivery.State],
			PublishTime: timestamppb.New(r.Event.CreatedAt), Cursor: r.Delivery.ID,
		})
		resp.NextCursor = r.Delivery.ID
	}
	return resp, nil
}

// eraseBatch is how many events one transaction of EraseSubject erases.
const eraseBatch = 500

// EraseSubject implements herald.v1.EventService.
func (s *Services) EraseSubject(ctx context.Context, req *heraldv1.EraseSubjectRequest) (*heraldv1.EraseSubjectResponse, error) {
	if req.GetSubject() == "" {
		return nil, invalidArgument("subject", "subject is required")
	}
	tenant, err := scopedTenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	resp := &heraldv1.EraseSubjectResponse{}
	for cursor := int64(0); ; {
		b, err := s.store.EventEraseSubject(ctx, tenant, req.GetSubject(), cursor, eraseBatch)
		if err != nil {
			return nil, storeError(err, "subject "+req.GetSubject())
		}
		resp.Erased += int32(b.Erased)
		resp.InProgress += int32(b.InProgress)
		if b.Done {
			break
		}
		cursor = b.Cursor
	}
	s.opts.Logger.Info("subject erased", "subject", req.GetSubject(), "tenant", tenant,
		"erased", resp.Erased, "in_progress", resp.InProgress, "by", auth.FromContext(ctx).KeyID)
	return resp, nil
}

// GetEvent implements herald.v1.EventService.
func (s *Services) GetEvent(ctx context.Context, req *heraldv1.GetEventRequest) (*heraldv1.GetEventResponse, error) {
	if req.GetSource() == "" || req.GetId() == "" {
		return nil, invalidArgument("source", "source and id are required")
	}
	tenant, err := scopedTenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	ev, ds, err := s.store.EventGet(ctx, tenant, req.GetSource(), req.GetId())
	if err != nil {
		return nil, storeError(err, "event "+req.GetSource()+"/"+req.GetId())
	}
	e, err := eventToProto(ev)
	if err != nil {
		return nil, err
	}
	resp := &heraldv1.GetEventResponse{Event: e, PublishTime: timestamppb.New(ev.CreatedAt)}
	caller := auth.FromContext(ctx)
	for _, d := range ds {
		// An unbound publisher's event may have reached other tenants'
		// subscriptions: a tenant-bound caller sees its own deliveries.
		if en, ok := s.catalog.Get(d.SubscriptionID); caller.Tenant == "" || (ok && caller.Sees(en.Subscription.Tenant)) {
			resp.Deliveries = append(resp.Deliveries, deliveryToProto(d))
		}
	}
	return resp, nil
}

// eventToProto decodes a stored event (erased: its record with no data).
func eventToProto(e *store.Event) (*cloudeventsv1.CloudEvent, error) {
	pe := &cloudeventsv1.CloudEvent{}
	if len(e.Payload) == 0 {
		pe.Id, pe.Source, pe.Type, pe.SpecVersion = e.ID, e.Source, e.Type, "1.0"
		return pe, nil
	}
	if err := proto.Unmarshal(e.Payload, pe); err != nil {
		return nil, status.Errorf(codes.Internal, "event %s/%s is stored damaged", e.Source, e.ID)
	}
	return pe, nil
}

// EraseEvent implements herald.v1.EventService.
func (s *Services) EraseEvent(ctx context.Context, req *heraldv1.EraseEventRequest) (*emptypb.Empty, error) {
	if req.GetSource() == "" || req.GetId() == "" {
		return nil, invalidArgument("source", "source and id are required")
	}
	tenant, err := scopedTenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	err = s.store.EventErase(ctx, tenant, req.GetSource(), req.GetId())
	switch {
	case errors.Is(err, store.ErrInProgress):
		return nil, status.Errorf(codes.FailedPrecondition, "event %s/%s: some of its deliveries may still be sent; erase it once they are delivered or dead", req.GetSource(), req.GetId())
	case err != nil:
		return nil, storeError(err, "event "+req.GetSource()+"/"+req.GetId())
	}
	s.opts.Logger.Info("event erased", "source", req.GetSource(), "id", req.GetId(), "tenant", tenant, "by", auth.FromContext(ctx).KeyID)
	return &emptypb.Empty{}, nil
}
