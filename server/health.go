package server

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

// healthSample is the most deliveries a health window examines.
const healthSample = 10_000

// GetSubscriptionHealth implements herald.v1.SubscriptionService.
func (s *Services) GetSubscriptionHealth(ctx context.Context, req *heraldv1.GetSubscriptionHealthRequest) (*heraldv1.SubscriptionHealth, error) {
	if _, err := s.owned(ctx, req.GetId()); err != nil {
		return nil, err
	}
	now := time.Now()
	day, err := s.store.DeliveryRecent(ctx, store.DeliveryRecentParams{
		SubscriptionID: req.GetId(), FromID: id.Lowest(id.Delivery, now.Add(-24*time.Hour)), Limit: healthSample,
	})
	if err != nil {
		return nil, storeError(err, "deliveries")
	}
	h := &heraldv1.SubscriptionHealth{SubscriptionId: req.GetId(), LastDay: healthWindow(day, len(day) == healthSample)}
	hourFrom := now.Add(-time.Hour)
	var hour []*store.DeliveryOutcome
	for _, o := range day {
		if o.CreatedAt.Before(hourFrom) {
			break // newest first
		}
		hour = append(hour, o)
	}
	h.LastHour = healthWindow(hour, len(day) == healthSample && len(hour) == len(day))
	counting := true
	for _, o := range day {
		switch o.State {
		case store.DeliveryDelivered:
			counting = false
			if h.LastSuccessTime == nil {
				h.LastSuccessTime = timestamppb.New(o.UpdatedAt)
			}
		case store.DeliveryDead, store.DeliveryRetrying:
			if counting {
				h.ConsecutiveFailures++
			}
			if h.LastFailureTime == nil {
				h.LastFailureTime = timestamppb.New(o.UpdatedAt)
				h.LastFailureStatus, h.LastFailureError = int32(o.LastStatus), o.LastError
			}
			if o.State == store.DeliveryRetrying {
				h.Retrying++
			}
		case store.DeliveryPending, store.DeliveryInFlight, store.DeliveryHeld:
			h.Waiting++
		}
	}
	return h, nil
}

// healthWindow sums up deliveries of one window.
func healthWindow(ds []*store.DeliveryOutcome, sampled bool) *heraldv1.HealthWindow {
	w := &heraldv1.HealthWindow{Deliveries: int32(len(ds)), Sampled: sampled}
	var latencies []time.Duration
	attempted, firstOK := 0, 0
	for _, o := range ds {
		switch o.State {
		case store.DeliveryDelivered:
			w.Delivered++
		case store.DeliveryDead:
			w.Dead++
		}
		if o.Attempts == 0 && o.FirstStatus == 0 && o.FirstLatency == 0 {
			continue // not attempted yet
		}
		attempted++
		if policy.DefaultRetry.Classify(o.FirstStatus) == policy.Delivered {
			firstOK++
		}
		latencies = append(latencies, o.FirstLatency)
	}
	if attempted > 0 {
		w.FirstAttemptSuccessRate = float64(firstOK) / float64(attempted)
	}
	if len(latencies) > 0 {
		slices.Sort(latencies)
		at := func(q float64) *durationpb.Duration {
			return durationpb.New(latencies[min(len(latencies)-1, int(q*float64(len(latencies))))])
		}
		w.LatencyP50, w.LatencyP95, w.LatencyP99 = at(0.50), at(0.95), at(0.99)
	}
	return w
}
