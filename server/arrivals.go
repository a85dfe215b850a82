package server

import (
	"context"

	"google.golang.org/grpc/stats"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/publish"
)

// arrivals announces Publish RPCs to the publisher from the moment their
// request has been received, while it is validated, so that a group commit
// can wait for them (publish.Publisher.Arriving). Not before: a client
// that stalls while sending its request must not hold any commit.
type arrivals struct {
	publisher *publish.Publisher
}

type arrivalKey struct{}

// arrival is one Publish RPC's announcement.
type arrival struct{ end func() }

func (a arrivals) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName != heraldv1.PublishService_Publish_FullMethodName {
		return ctx
	}
	return context.WithValue(ctx, arrivalKey{}, &arrival{})
}

func (a arrivals) HandleRPC(ctx context.Context, s stats.RPCStats) {
	ar, ok := ctx.Value(arrivalKey{}).(*arrival)
	if !ok {
		return
	}
	switch s.(type) {
	case *stats.InPayload:
		if ar.end == nil {
			ar.end = a.publisher.Arriving()
		}
	case *stats.End:
		if ar.end != nil {
			ar.end()
		}
	}
}

func (arrivals) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (arrivals) HandleConn(context.Context, stats.ConnStats)                       {}
