package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/store"
)

// EraseEvent implements herald.v1.EventService.
func (s *Services) EraseEvent(ctx context.Context, req *heraldv1.EraseEventRequest) (*emptypb.Empty, error) {
	if req.GetSource() == "" || req.GetId() == "" {
		return nil, invalidArgument("source", "source and id are required")
	}
	tenant := req.GetTenant()
	if p := auth.FromContext(ctx); p.Tenant != "" {
		if tenant != "" && tenant != p.Tenant {
			return nil, status.Error(codes.PermissionDenied, "the API key is bound to another tenant")
		}
		tenant = p.Tenant
	}
	err := s.store.EventErase(ctx, tenant, req.GetSource(), req.GetId())
	switch {
	case errors.Is(err, store.ErrInProgress):
		return nil, status.Errorf(codes.FailedPrecondition, "event %s/%s: some of its deliveries may still be sent; erase it once they are delivered or dead", req.GetSource(), req.GetId())
	case err != nil:
		return nil, storeError(err, "event "+req.GetSource()+"/"+req.GetId())
	}
	s.opts.Logger.Info("event erased", "source", req.GetSource(), "id", req.GetId(), "tenant", tenant, "by", auth.FromContext(ctx).KeyID)
	return &emptypb.Empty{}, nil
}
