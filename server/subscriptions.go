package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/clients/signing"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/opsevents"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// CreateSubscription implements herald.v1.SubscriptionService.
func (s *Services) CreateSubscription(ctx context.Context, req *heraldv1.CreateSubscriptionRequest) (*heraldv1.Subscription, error) {
	in := req.GetSubscription()
	if in == nil {
		return nil, invalidArgument("subscription", "required")
	}
	tenant, err := s.createTenant(ctx, in.GetTenant())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	sub := &store.Subscription{
		ID:        id.New(id.Subscription),
		Tenant:    tenant,
		State:     store.SubscriptionActive,
		CreatedAt: now,
		UpdatedAt: now,
	}
	var secret, public string
	switch in.GetSigningAlgorithm() {
	case heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_UNSPECIFIED, heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_HMAC_SHA256:
		secret = signing.NewSecret()
		sub.Secrets = []store.Secret{{Key: secret}}
	case heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_ED25519:
		var private string
		private, public = signing.NewSigningKey()
		sub.Secrets = []store.Secret{{Key: private}}
	default:
		return nil, invalidArgument("subscription.signing_algorithm", "unknown algorithm")
	}
	if err := s.apply(sub, in, nil); err != nil {
		return nil, err
	}
	if err := s.checkSinkAddress(ctx, in, nil); err != nil {
		return nil, err
	}
	var generated string
	if sub.BearerToken == "" && !in.GetSinkCredential().GetOmitBearerToken() && !setsAuthorization(sub.Headers) {
		// The CloudEvents webhook spec requires an access token on every
		// delivery (section 3).
		generated = delivery.NewBearerToken()
		sub.BearerToken = generated
	}
	if !sub.SkipValidation {
		sub.State, sub.StateReason = store.SubscriptionPendingValidation, validationReason
	}
	if err := s.store.SubscriptionInsert(ctx, sub); err != nil {
		return nil, storeError(err, "subscription")
	}
	s.reload(ctx)
	if err := s.validate(ctx, sub); err != nil {
		return nil, err
	}
	out := s.subscriptionToProto(sub)
	out.SigningSecret, out.SigningPublicKey = secret, public
	out.GeneratedBearerToken = generated
	return out, nil
}

// scopedTenant is the tenant a call works on: the one asked for, which a
// key bound to a tenant may leave empty or set to its own.
func scopedTenant(ctx context.Context, asked string) (string, error) {
	p := auth.FromContext(ctx)
	if p.Tenant == "" {
		return asked, nil
	}
	if asked != "" && asked != p.Tenant {
		return "", status.Error(codes.PermissionDenied, "the API key is bound to another tenant")
	}
	return p.Tenant, nil
}

// createTenant is the tenant a new subscription belongs to: the caller's
// if its key is bound to one, else the one asked for, else the default.
func (s *Services) createTenant(ctx context.Context, asked string) (string, error) {
	p := auth.FromContext(ctx)
	tenant := cmp.Or(asked, p.Tenant, store.DefaultTenant)
	switch {
	case !policy.ValidTenant(tenant):
		return "", invalidArgument("subscription.tenant", fmt.Sprintf("must be 1 to %d lower-case letters, digits, '.', '_' or '-'", policy.MaxTenantLength))
	case !p.Sees(tenant):
		return "", status.Error(codes.PermissionDenied, "the API key is bound to another tenant")
	case len(s.catalog.Tenant(tenant)) >= s.opts.Limits.MaxSubscriptionsPerTenant:
		return "", status.Errorf(codes.ResourceExhausted, "tenant %s has %d subscriptions, the most a tenant may have", tenant, s.opts.Limits.MaxSubscriptionsPerTenant)
	}
	return tenant, nil
}

// notFound is the answer about a subscription the caller may not see:
// the same as for one that does not exist.
func notFound(what string) error {
	return status.Errorf(codes.NotFound, "%s not found", what)
}

// owned returns a subscription the caller may see.
func (s *Services) owned(ctx context.Context, id string) (*store.Subscription, error) {
	sub, err := s.store.SubscriptionGet(ctx, id)
	if err != nil {
		return nil, storeError(err, "subscription "+id)
	}
	if !auth.FromContext(ctx).Sees(sub.Tenant) {
		return nil, notFound("subscription " + id)
	}
	return sub, nil
}

// setsAuthorization reports whether static headers set Authorization.
func setsAuthorization(headers map[string]string) bool {
	for k := range headers {
		if strings.EqualFold(k, "Authorization") {
			return true
		}
	}
	return false
}

// validationReason is the state reason of a subscription whose handshake
// is under way.
const validationReason = "waiting for the sink to consent (webhook validation handshake)"

// validate starts a pending subscription's validation handshake.
func (s *Services) validate(ctx context.Context, sub *store.Subscription) error {
	if sub.State != store.SubscriptionPendingValidation {
		return nil
	}
	err := s.workflows.StartHandshake(ctx, workflows.HandshakeInput{
		SubscriptionID: sub.ID,
		Origin:         s.opts.Origin,
		CallbackBase:   strings.TrimSuffix(s.opts.PublicURL, "/") + validationPath,
	})
	if err != nil {
		return status.Errorf(codes.Unavailable, "subscription %s is stored but its validation handshake did not start (%v); call ValidateSubscription", sub.ID, err)
	}
	return nil
}

// ValidateSubscription implements herald.v1.SubscriptionService.
func (s *Services) ValidateSubscription(ctx context.Context, req *heraldv1.ValidateSubscriptionRequest) (*heraldv1.Subscription, error) {
	caller := auth.FromContext(ctx)
	sub, err := s.store.SubscriptionUpdate(ctx, req.GetId(), func(sub *store.Subscription) error {
		if !caller.Sees(sub.Tenant) {
			return notFound("subscription " + sub.ID)
		}
		if sub.State == store.SubscriptionDisabled || sub.State == store.SubscriptionSuspended {
			return status.Errorf(codes.FailedPrecondition, "subscription %s is %s (%s); enable it first", sub.ID, sub.State, sub.StateReason)
		}
		sub.State, sub.StateReason = store.SubscriptionPendingValidation, validationReason
		return nil
	})
	if err != nil {
		return nil, storeError(err, "subscription "+req.GetId())
	}
	s.reload(ctx)
	if err := s.validate(ctx, sub); err != nil {
		return nil, err
	}
	return s.subscriptionToProto(sub), nil
}

// RotateSecret implements herald.v1.SubscriptionService.
func (s *Services) RotateSecret(ctx context.Context, req *heraldv1.RotateSecretRequest) (*heraldv1.RotateSecretResponse, error) {
	overlap := 24 * time.Hour
	if d := req.GetOverlap(); d != nil {
		overlap = d.AsDuration()
		if overlap < 0 || overlap > maxRotationOverlap {
			return nil, invalidArgument("overlap", "must be between 0 and 168h")
		}
	}
	now := time.Now()
	expire := now.Add(overlap)
	resp := &heraldv1.RotateSecretResponse{}
	caller := auth.FromContext(ctx)
	_, err := s.store.SubscriptionUpdate(ctx, req.GetId(), func(sub *store.Subscription) error {
		if !caller.Sees(sub.Tenant) {
			return notFound("subscription " + sub.ID)
		}
		var next store.Secret
		if len(sub.Secrets) > 0 && strings.HasPrefix(sub.Secrets[0].Key, signing.SigningKeyPrefix) {
			private, public := signing.NewSigningKey()
			next, resp.SigningPublicKey = store.Secret{Key: private}, public
		} else {
			next = store.Secret{Key: signing.NewSecret()}
			resp.SigningSecret = next.Key
		}
		keys := []store.Secret{next}
		for _, old := range sub.Secrets {
			if old.ExpiresAt.IsZero() || old.ExpiresAt.After(expire) {
				old.ExpiresAt = expire
			}
			if old.ExpiresAt.After(now) {
				keys = append(keys, old) // still in its overlap
			}
		}
		sub.Secrets = keys
		return nil
	})
	if err != nil {
		return nil, storeError(err, "subscription "+req.GetId())
	}
	s.reload(ctx)
	resp.PreviousExpireTime = timestamppb.New(expire)
	return resp, nil
}

// maxRotationOverlap is the longest a rotated-out key keeps signing.
const maxRotationOverlap = 7 * 24 * time.Hour

// GetSubscription implements herald.v1.SubscriptionService.
func (s *Services) GetSubscription(ctx context.Context, req *heraldv1.GetSubscriptionRequest) (*heraldv1.Subscription, error) {
	sub, err := s.owned(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return s.subscriptionToProto(sub), nil
}

// ListSubscriptions implements herald.v1.SubscriptionService.
func (s *Services) ListSubscriptions(ctx context.Context, req *heraldv1.ListSubscriptionsRequest) (*heraldv1.ListSubscriptionsResponse, error) {
	limit := pageSize(req.GetPageSize())
	tenant, err := scopedTenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	subs, err := s.store.SubscriptionList(ctx, store.SubscriptionListParams{Tenant: tenant, Labels: req.GetLabels(), Limit: limit + 1, After: req.GetPageToken()})
	if err != nil {
		return nil, storeError(err, "subscriptions")
	}
	resp := &heraldv1.ListSubscriptionsResponse{}
	if len(subs) > limit {
		subs = subs[:limit]
		resp.NextPageToken = subs[limit-1].ID
	}
	for _, sub := range subs {
		resp.Subscriptions = append(resp.Subscriptions, s.subscriptionToProto(sub))
	}
	return resp, nil
}

// UpdateSubscription implements herald.v1.SubscriptionService.
func (s *Services) UpdateSubscription(ctx context.Context, req *heraldv1.UpdateSubscriptionRequest) (*heraldv1.Subscription, error) {
	in := req.GetSubscription()
	if in == nil {
		return nil, invalidArgument("subscription", "required")
	}
	if err := s.checkSinkAddress(ctx, in, req.GetUpdateMask().GetPaths()); err != nil && in.GetSink() != "" {
		return nil, err
	}
	var oldSink string
	var oldSkip bool
	var oldState store.SubscriptionState
	caller := auth.FromContext(ctx)
	sub, err := s.store.SubscriptionUpdate(ctx, in.GetId(), func(sub *store.Subscription) error {
		if !caller.Sees(sub.Tenant) {
			return notFound("subscription " + sub.ID)
		}
		oldSink, oldSkip, oldState = sub.Sink, sub.SkipValidation, sub.State
		if err := s.apply(sub, in, req.GetUpdateMask().GetPaths()); err != nil {
			return err
		}
		switch {
		case sub.State == store.SubscriptionDisabled, sub.State == store.SubscriptionSuspended:
		case sub.SkipValidation && sub.State == store.SubscriptionPendingValidation:
			sub.State, sub.StateReason, sub.Validation = store.SubscriptionActive, "", nil
		case !sub.SkipValidation && (sub.Sink != oldSink || oldSkip):
			// A new sink (or one no longer exempt) must consent again.
			sub.State, sub.StateReason, sub.AllowedRate = store.SubscriptionPendingValidation, validationReason, 0
		}
		return nil
	})
	if err != nil {
		return nil, storeError(err, "subscription "+in.GetId())
	}
	s.reload(ctx)
	if sub.State != oldState {
		switch sub.State {
		case store.SubscriptionDisabled:
			s.tell(ctx, sub, opsevents.SubscriptionDisabled)
		case store.SubscriptionActive:
			s.tell(ctx, sub, opsevents.SubscriptionEnabled)
		}
	}
	if sub.State == store.SubscriptionPendingValidation && (sub.Sink != oldSink || oldSkip) {
		if err := s.validate(ctx, sub); err != nil {
			return nil, err
		}
	}
	return s.subscriptionToProto(sub), nil
}

// DeleteSubscription implements herald.v1.SubscriptionService.
func (s *Services) DeleteSubscription(ctx context.Context, req *heraldv1.DeleteSubscriptionRequest) (*emptypb.Empty, error) {
	if _, err := s.owned(ctx, req.GetId()); err != nil {
		return nil, err
	}
	if err := s.store.SubscriptionDelete(ctx, req.GetId()); err != nil {
		return nil, storeError(err, "subscription "+req.GetId())
	}
	s.reload(ctx)
	return &emptypb.Empty{}, nil
}

// tell publishes an operational event about sub's new state; a failure
// is logged, not the caller's (the change is made).
func (s *Services) tell(ctx context.Context, sub *store.Subscription, typ string) {
	if err := s.opts.Ops.SubscriptionChanged(ctx, sub, typ, sub.StateReason, sub.UpdatedAt); err != nil {
		s.opts.Logger.Warn("operational event", "type", typ, "subscription", sub.ID, "err", err)
	}
}

// reload makes the catalog see a change at once; other nodes see it at
// their next periodic reload.
func (s *Services) reload(ctx context.Context) {
	if err := s.catalog.Reload(ctx); err != nil {
		s.opts.Logger.Warn("catalog reload after subscription change", "err", err)
	}
}

// writable are the fields UpdateSubscription may replace.
var writable = []string{"source", "types", "config", "filters", "sink", "protocol", "protocol_settings",
	"retry_policy", "content_mode", "max_batch_size", "rate_limit", "max_concurrency", "skip_validation",
	"subscription_pause_only", "sink_credential", "state", "display_name", "description", "labels", "suspend_after"}

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
		case "display_name":
			if len(in.GetDisplayName()) > policy.MaxKeyNameLength {
				return invalidArgument("subscription.display_name", fmt.Sprintf("longer than %d bytes", policy.MaxKeyNameLength))
			}
			sub.DisplayName = in.GetDisplayName()
		case "description":
			if len(in.GetDescription()) > policy.MaxDescriptionLength {
				return invalidArgument("subscription.description", fmt.Sprintf("longer than %d bytes", policy.MaxDescriptionLength))
			}
			sub.Description = in.GetDescription()
		case "labels":
			if err := policy.CheckLabels(in.GetLabels()); err != nil {
				return invalidArgument("subscription.labels", err.Error())
			}
			sub.Labels = in.GetLabels()
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
			headers, err := writeOnlyHeaders(ps.GetHeaders(), sub.Headers, s.opts.Limits.MaxHeadersPerSubscription)
			if err != nil {
				return invalidArgument("subscription.protocol_settings.headers", err.Error())
			}
			sub.Headers, sub.Method = headers, ps.GetMethod()
		case "retry_policy":
			r, err := retryFromProto(in.GetRetryPolicy())
			if err != nil {
				return invalidArgument("subscription.retry_policy", err.Error())
			}
			sub.RetryPolicy = r
		case "content_mode":
			sub.ContentMode = contentModeFromProto(in.GetContentMode())
		case "max_batch_size":
			if n := in.GetMaxBatchSize(); n < 0 || n > policy.MaxBatchSize {
				return invalidArgument("subscription.max_batch_size", fmt.Sprintf("must be between 0 (default) and %d", policy.MaxBatchSize))
			}
			sub.MaxBatchSize = int(in.GetMaxBatchSize())
		case "rate_limit":
			if in.GetRateLimit() < 0 {
				return invalidArgument("subscription.rate_limit", "must not be negative")
			}
			sub.RateLimit = int(in.GetRateLimit())
		case "suspend_after":
			sub.SuspendAfter = 0
			if d := in.GetSuspendAfter(); d != nil {
				if err := d.CheckValid(); err != nil || d.AsDuration() < time.Second {
					return invalidArgument("subscription.suspend_after", "must be at least 1s (unset: the node's --suspend-after)")
				}
				sub.SuspendAfter = d.AsDuration()
			}
		case "max_concurrency":
			if in.GetMaxConcurrency() < 0 {
				return invalidArgument("subscription.max_concurrency", "must not be negative")
			}
			sub.MaxConcurrency = int(in.GetMaxConcurrency())
		case "skip_validation":
			sub.SkipValidation = in.GetSkipValidation()
		case "subscription_pause_only":
			sub.SubscriptionPauseOnly = in.GetSubscriptionPauseOnly()
		case "sink_credential":
			tok := in.GetSinkCredential().GetBearerToken()
			if err := delivery.CheckHeader("Authorization", "Bearer "+tok); err != nil {
				return invalidArgument("subscription.sink_credential.bearer_token", err.Error())
			}
			sub.BearerToken = tok
		case "state":
			switch in.GetState() {
			case heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE:
				if sub.State == store.SubscriptionDisabled || sub.State == store.SubscriptionSuspended {
					// Re-enabled: active, its failure run forgotten; what
					// was held is released (the catalog sees the change,
					// lifecycle.Released).
					sub.State, sub.StateReason, sub.FailingSince = store.SubscriptionActive, "", time.Time{}
				}
			case heraldv1.SubscriptionState_SUBSCRIPTION_STATE_SUSPENDED:
				return invalidArgument("subscription.state", "SUSPENDED is Herald's to set; use DISABLED")
			case heraldv1.SubscriptionState_SUBSCRIPTION_STATE_PENDING_VALIDATION:
				return invalidArgument("subscription.state", "use ValidateSubscription to run the handshake")
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

// writeOnlyHeaders checks a request's static headers and returns them,
// an empty value keeping the value stored for that name: values are
// write-only (Get and List show names only), so a subscription read,
// changed and written back keeps them.
func writeOnlyHeaders(in, stored map[string]string, maxHeaders int) (map[string]string, error) {
	if len(in) > maxHeaders {
		return nil, fmt.Errorf("%d headers; at most %d", len(in), maxHeaders)
	}
	var out map[string]string
	for name, v := range in {
		if v == "" {
			old, ok := stored[name]
			if !ok {
				return nil, fmt.Errorf("%s has no value (an empty value keeps a stored one, and none is stored)", name)
			}
			v = old
		}
		if len(v) > policy.MaxHeaderValueLength {
			return nil, fmt.Errorf("%s: value longer than %d bytes", name, policy.MaxHeaderValueLength)
		}
		if err := delivery.CheckHeader(name, v); err != nil {
			return nil, err
		}
		if out == nil {
			out = make(map[string]string, len(in))
		}
		out[name] = v
	}
	return out, nil
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

// checkSinkAddress refuses a sink that is, or resolves only to, an address
// Herald may not connect to (package egress): no subscription may aim
// Herald at internal addresses. Every dial is checked again; this is the
// early, clear refusal. It resolves names, so it runs outside any store
// transaction.
func (s *Services) checkSinkAddress(ctx context.Context, in *heraldv1.Subscription, paths []string) error {
	if paths != nil && !slices.Contains(paths, "sink") {
		return nil
	}
	if err := s.opts.Egress.CheckSink(ctx, in.GetSink(), s.opts.Resolver); err != nil {
		return invalidArgument("subscription.sink", err.Error())
	}
	return nil
}
