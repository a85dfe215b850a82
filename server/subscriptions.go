package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/signing"
	"github.com/heraldhq/herald/internal/store"
)

// CreateSubscription implements herald.v1.SubscriptionService.
func (s *Services) CreateSubscription(ctx context.Context, req *heraldv1.CreateSubscriptionRequest) (*heraldv1.Subscription, error) {
	in := req.GetSubscription()
	if in == nil {
		return nil, invalidArgument("subscription", "required")
	}
	now := time.Now()
	sub := &store.Subscription{
		ID:        id.New(id.Subscription),
		State:     store.SubscriptionActive,
		Secrets:   []string{signing.NewSecret()},
		CreatedAt: now,
		UpdatedAt: now,
	}
	if err := s.apply(sub, in, nil); err != nil {
		return nil, err
	}
	if err := s.store.SubscriptionInsert(ctx, sub); err != nil {
		return nil, storeError(err, "subscription")
	}
	s.reload(ctx)
	out := subscriptionToProto(sub)
	out.SigningSecret = sub.Secrets[0]
	return out, nil
}

// GetSubscription implements herald.v1.SubscriptionService.
func (s *Services) GetSubscription(ctx context.Context, req *heraldv1.GetSubscriptionRequest) (*heraldv1.Subscription, error) {
	sub, err := s.store.SubscriptionGet(ctx, req.GetId())
	if err != nil {
		return nil, storeError(err, "subscription "+req.GetId())
	}
	return subscriptionToProto(sub), nil
}

// ListSubscriptions implements herald.v1.SubscriptionService.
func (s *Services) ListSubscriptions(ctx context.Context, req *heraldv1.ListSubscriptionsRequest) (*heraldv1.ListSubscriptionsResponse, error) {
	limit := pageSize(req.GetPageSize())
	subs, err := s.store.SubscriptionList(ctx, store.SubscriptionListParams{Limit: limit + 1, After: req.GetPageToken()})
	if err != nil {
		return nil, storeError(err, "subscriptions")
	}
	resp := &heraldv1.ListSubscriptionsResponse{}
	if len(subs) > limit {
		subs = subs[:limit]
		resp.NextPageToken = subs[limit-1].ID
	}
	for _, sub := range subs {
		resp.Subscriptions = append(resp.Subscriptions, subscriptionToProto(sub))
	}
	return resp, nil
}

// UpdateSubscription implements herald.v1.SubscriptionService.
func (s *Services) UpdateSubscription(ctx context.Context, req *heraldv1.UpdateSubscriptionRequest) (*heraldv1.Subscription, error) {
	in := req.GetSubscription()
	if in == nil {
		return nil, invalidArgument("subscription", "required")
	}
	sub, err := s.store.SubscriptionGet(ctx, in.GetId())
	if err != nil {
		return nil, storeError(err, "subscription "+in.GetId())
	}
	if err := s.apply(sub, in, req.GetUpdateMask().GetPaths()); err != nil {
		return nil, err
	}
	sub.UpdatedAt = time.Now()
	if err := s.store.SubscriptionUpdate(ctx, sub); err != nil {
		return nil, storeError(err, "subscription "+in.GetId())
	}
	s.reload(ctx)
	return subscriptionToProto(sub), nil
}

// DeleteSubscription implements herald.v1.SubscriptionService.
func (s *Services) DeleteSubscription(ctx context.Context, req *heraldv1.DeleteSubscriptionRequest) (*emptypb.Empty, error) {
	if err := s.store.SubscriptionDelete(ctx, req.GetId()); err != nil {
		return nil, storeError(err, "subscription "+req.GetId())
	}
	s.reload(ctx)
	return &emptypb.Empty{}, nil
}

// reload makes the catalog see a change at once; other nodes see it at
// their next periodic reload.
func (s *Services) reload(ctx context.Context) {
	if err := s.catalog.Reload(ctx); err != nil {
		s.opts.Logger.Warn("catalog reload after subscription change", "err", err)
	}
}

// writable are the fields UpdateSubscription may replace.
var writable = []string{"source", "types", "config", "filters", "sink", "protocol", "protocol_settings", "retry_policy", "content_mode", "state"}

// apply validates in and copies the fields named in paths (all writable
// fields if paths is empty) onto sub.
func (s *Services) apply(sub *store.Subscription, in *heraldv1.Subscription, paths []string) error {
	if len(paths) == 0 {
		paths = writable
	}
	for _, p := range paths {
		switch p {
		case "source":
			if in.GetSource() != "" {
				if _, err := url.Parse(in.GetSource()); err != nil {
					return invalidArgument("subscription.source", "must be a URI-reference")
				}
			}
			sub.Source = in.GetSource()
		case "types":
			for _, t := range in.GetTypes() {
				if t == "" {
					return invalidArgument("subscription.types", "must not contain empty types")
				}
			}
			sub.Types = in.GetTypes()
		case "config":
			sub.Config = in.GetConfig()
		case "filters":
			exprs, err := filtersFromProto(in.GetFilters(), "filters")
			if err == nil {
				err = filter.Validate(exprs)
			}
			if err != nil {
				return invalidArgument("subscription.filters", err.Error())
			}
			sub.Filters = exprs
		case "sink":
			if err := s.checkSink(in.GetSink()); err != nil {
				return invalidArgument("subscription.sink", err.Error())
			}
			sub.Sink = in.GetSink()
		case "protocol":
			if in.GetProtocol() != "HTTP" {
				return invalidArgument("subscription.protocol", `must be "HTTP" (the only protocol Herald delivers over)`)
			}
			sub.Protocol = in.GetProtocol()
		case "protocol_settings":
			ps := in.GetProtocolSettings()
			if m := ps.GetMethod(); m != "" && m != http.MethodPost {
				return invalidArgument("subscription.protocol_settings.method", `only "POST" is supported`)
			}
			for name, v := range ps.GetHeaders() {
				if err := delivery.CheckHeader(name, v); err != nil {
					return invalidArgument("subscription.protocol_settings.headers", err.Error())
				}
			}
			sub.Headers, sub.Method = ps.GetHeaders(), ps.GetMethod()
		case "retry_policy":
			r, err := retryFromProto(in.GetRetryPolicy())
			if err != nil {
				return invalidArgument("subscription.retry_policy", err.Error())
			}
			sub.RetryPolicy = r
		case "content_mode":
			sub.ContentMode = contentModeFromProto(in.GetContentMode())
		case "state":
			switch in.GetState() {
			case heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE:
				sub.State, sub.StateReason = store.SubscriptionActive, ""
			case heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED:
				sub.State, sub.StateReason = store.SubscriptionDisabled, "disabled through the API"
			}
			// Unspecified keeps the state (a new subscription is active).
		default:
			return invalidArgument("update_mask", "unknown or read-only field "+p)
		}
	}
	if sub.Sink == "" {
		return invalidArgument("subscription.sink", "required")
	}
	if sub.Protocol == "" {
		return invalidArgument("subscription.protocol", `required ("HTTP")`)
	}
	return nil
}

func (s *Services) checkSink(sink string) error {
	if sink == "" {
		return errors.New("required")
	}
	u, err := url.Parse(sink)
	if err != nil || u.Host == "" {
		return errors.New("must be an absolute URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !s.opts.AllowInsecureSinks {
			return errors.New("must use https")
		}
	default:
		return errors.New("must be an http or https URL")
	}
	if u.User != nil {
		return errors.New("must not contain credentials")
	}
	return nil
}
