package server

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/clients/signing"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// filtersFromProto converts API filters to expressions. Structural
// problems (no dialect, an empty list) are reported with the field path.
func filtersFromProto(fs []*heraldv1.Filter, path string) ([]filter.Expression, error) {
	out := make([]filter.Expression, 0, len(fs))
	for i, f := range fs {
		e, err := filterFromProto(f, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func filterFromProto(f *heraldv1.Filter, path string) (filter.Expression, error) {
	switch d := f.GetDialect().(type) {
	case *heraldv1.Filter_Exact:
		return filter.Expression{Exact: nonNil(d.Exact.GetAttributes())}, nil
	case *heraldv1.Filter_Prefix:
		return filter.Expression{Prefix: nonNil(d.Prefix.GetAttributes())}, nil
	case *heraldv1.Filter_Suffix:
		return filter.Expression{Suffix: nonNil(d.Suffix.GetAttributes())}, nil
	case *heraldv1.Filter_All:
		if len(d.All.GetFilters()) == 0 {
			return filter.Expression{}, fmt.Errorf("%s.all: must not be empty", path)
		}
		sub, err := filtersFromProto(d.All.GetFilters(), path+".all")
		return filter.Expression{All: sub}, err
	case *heraldv1.Filter_Any:
		if len(d.Any.GetFilters()) == 0 {
			return filter.Expression{}, fmt.Errorf("%s.any: must not be empty", path)
		}
		sub, err := filtersFromProto(d.Any.GetFilters(), path+".any")
		return filter.Expression{Any: sub}, err
	case *heraldv1.Filter_Not:
		sub, err := filterFromProto(d.Not, path+".not")
		return filter.Expression{Not: &sub}, err
	case *heraldv1.Filter_Sql:
		if d.Sql == "" {
			return filter.Expression{}, fmt.Errorf("%s.sql: must not be empty", path)
		}
		return filter.Expression{SQL: d.Sql}, nil
	default:
		return filter.Expression{}, fmt.Errorf("%s: exactly one dialect (exact, prefix, suffix, all, any, not, sql) must be set", path)
	}
}

// nonNil keeps an empty attribute map distinguishable from an unset one.
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func filtersToProto(es []filter.Expression) []*heraldv1.Filter {
	out := make([]*heraldv1.Filter, 0, len(es))
	for _, e := range es {
		out = append(out, filterToProto(e))
	}
	return out
}

func filterToProto(e filter.Expression) *heraldv1.Filter {
	switch {
	case e.Exact != nil:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_Exact{Exact: &heraldv1.AttributeFilter{Attributes: e.Exact}}}
	case e.Prefix != nil:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_Prefix{Prefix: &heraldv1.AttributeFilter{Attributes: e.Prefix}}}
	case e.Suffix != nil:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_Suffix{Suffix: &heraldv1.AttributeFilter{Attributes: e.Suffix}}}
	case e.All != nil:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_All{All: &heraldv1.FilterList{Filters: filtersToProto(e.All)}}}
	case e.Any != nil:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_Any{Any: &heraldv1.FilterList{Filters: filtersToProto(e.Any)}}}
	case e.Not != nil:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_Not{Not: filterToProto(*e.Not)}}
	default:
		return &heraldv1.Filter{Dialect: &heraldv1.Filter_Sql{Sql: e.SQL}}
	}
}

func retryFromProto(p *heraldv1.RetryPolicy) (policy.Retry, error) {
	if p == nil {
		return policy.Retry{}, nil
	}
	r := policy.Retry{
		InitialInterval:    p.GetInitialInterval().AsDuration(),
		BackoffCoefficient: p.GetBackoffCoefficient(),
		MaximumInterval:    p.GetMaximumInterval().AsDuration(),
		MaximumAttempts:    int(p.GetMaximumAttempts()),
		MaximumAge:         p.GetMaximumAge().AsDuration(),
	}
	for name, d := range map[string]*durationpb.Duration{
		"initial_interval": p.GetInitialInterval(), "maximum_interval": p.GetMaximumInterval(), "maximum_age": p.GetMaximumAge(),
	} {
		if d != nil && d.CheckValid() != nil {
			return r, fmt.Errorf("retry_policy.%s: not a valid duration", name)
		}
	}
	// Zero takes the default; anything else must be within the limits, so
	// that no subscription can ask for a retry storm.
	c := r.BackoffCoefficient
	switch {
	case r.InitialInterval != 0 && (r.InitialInterval < policy.MinRetryInterval || r.InitialInterval > policy.MaxRetryInterval):
		return r, fmt.Errorf("retry_policy.initial_interval: must be 0 (the default) or between %s and %s", policy.MinRetryInterval, policy.MaxRetryInterval)
	case r.MaximumInterval != 0 && (r.MaximumInterval < policy.MinRetryInterval || r.MaximumInterval > policy.MaxRetryInterval):
		return r, fmt.Errorf("retry_policy.maximum_interval: must be 0 (the default) or between %s and %s", policy.MinRetryInterval, policy.MaxRetryInterval)
	case r.MaximumAge < 0 || r.MaximumAge > policy.MaxRetryAge:
		return r, fmt.Errorf("retry_policy.maximum_age: must be 0 (the default) or up to %s", policy.MaxRetryAge)
	case r.MaximumAttempts < 0 || r.MaximumAttempts > policy.MaxRetryAttempts:
		return r, fmt.Errorf("retry_policy.maximum_attempts: must be 0 (the default) or up to %d", policy.MaxRetryAttempts)
	case math.IsNaN(c) || math.IsInf(c, 0) || c != 0 && (c < 1 || c > policy.MaxBackoffCoefficient):
		return r, fmt.Errorf("retry_policy.backoff_coefficient: must be 0 (the default) or between 1 and %g", policy.MaxBackoffCoefficient)
	}
	for _, c := range p.GetPermanentStatusCodes() {
		if c < 100 || c > 599 || (c >= 200 && c < 300) {
			return r, fmt.Errorf("retry_policy.permanent_status_codes: %d is not a failure status", c)
		}
		r.PermanentStatus = append(r.PermanentStatus, int(c))
	}
	for _, c := range p.GetRetryableStatusCodes() {
		if c < 100 || c > 599 || (c >= 200 && c < 300) {
			return r, fmt.Errorf("retry_policy.retryable_status_codes: %d is not a failure status", c)
		}
		r.RetryableStatus = append(r.RetryableStatus, int(c))
	}
	return r, nil
}

func retryToProto(r policy.Retry) *heraldv1.RetryPolicy {
	r = r.WithDefaults()
	p := &heraldv1.RetryPolicy{
		InitialInterval:    durationpb.New(r.InitialInterval),
		BackoffCoefficient: r.BackoffCoefficient,
		MaximumInterval:    durationpb.New(r.MaximumInterval),
		MaximumAttempts:    int32(r.MaximumAttempts),
		MaximumAge:         durationpb.New(r.MaximumAge),
	}
	for _, c := range r.PermanentStatus {
		p.PermanentStatusCodes = append(p.PermanentStatusCodes, int32(c))
	}
	for _, c := range r.RetryableStatus {
		p.RetryableStatusCodes = append(p.RetryableStatusCodes, int32(c))
	}
	return p
}

func contentModeFromProto(m heraldv1.ContentMode) policy.ContentMode {
	switch m {
	case heraldv1.ContentMode_CONTENT_MODE_STRUCTURED:
		return policy.ContentStructured
	case heraldv1.ContentMode_CONTENT_MODE_BATCHED:
		return policy.ContentBatched
	}
	return policy.ContentBinary
}

func contentModeToProto(m policy.ContentMode) heraldv1.ContentMode {
	switch m {
	case policy.ContentStructured:
		return heraldv1.ContentMode_CONTENT_MODE_STRUCTURED
	case policy.ContentBatched:
		return heraldv1.ContentMode_CONTENT_MODE_BATCHED
	}
	return heraldv1.ContentMode_CONTENT_MODE_BINARY
}

var subscriptionStates = map[store.SubscriptionState]heraldv1.SubscriptionState{
	store.SubscriptionActive:            heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE,
	store.SubscriptionDisabled:          heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED,
	store.SubscriptionPendingValidation: heraldv1.SubscriptionState_SUBSCRIPTION_STATE_PENDING_VALIDATION,
	store.SubscriptionSuspended:         heraldv1.SubscriptionState_SUBSCRIPTION_STATE_SUSPENDED,
}

// subscriptionToProto renders a subscription without its secrets.
func (svc *Services) subscriptionToProto(s *store.Subscription) *heraldv1.Subscription {
	out := subscriptionProto(s)
	if en, ok := svc.catalog.Get(s.ID); ok {
		out.OriginAllowedRate = int32(en.OriginRate())
	}
	return out
}

// subscriptionProto is s as the API shows it, without what the catalog
// adds (subscriptionToProto).
func subscriptionProto(s *store.Subscription) *heraldv1.Subscription {
	p := &heraldv1.Subscription{
		Id:                    s.ID,
		Tenant:                s.Tenant,
		DisplayName:           s.DisplayName,
		Description:           s.Description,
		Labels:                maps.Clone(s.Labels),
		Source:                s.Source,
		Types:                 slices.Clone(s.Types),
		Config:                maps.Clone(s.Config),
		Filters:               filtersToProto(s.Filters),
		Sink:                  s.Sink,
		Protocol:              s.Protocol,
		State:                 subscriptionStates[s.State],
		StateReason:           s.StateReason,
		RetryPolicy:           retryToProto(s.RetryPolicy),
		ContentMode:           contentModeToProto(s.ContentMode),
		CreateTime:            timestamppb.New(s.CreatedAt),
		UpdateTime:            timestamppb.New(s.UpdatedAt),
		SkipValidation:        s.SkipValidation,
		SubscriptionPauseOnly: s.SubscriptionPauseOnly,
		RateLimit:             int32(s.RateLimit),
		AllowedRate:           int32(s.AllowedRate),
		MaxConcurrency:        int32(s.MaxConcurrency),
		MaxBatchSize:          int32(s.MaxBatchSize),
		HasSinkCredential:     s.BearerToken != "",
		SigningAlgorithm:      heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_HMAC_SHA256,
	}
	if s.SuspendAfter > 0 {
		p.SuspendAfter = durationpb.New(s.SuspendAfter)
	}
	if !s.FailingSince.IsZero() {
		p.FailingSince = timestamppb.New(s.FailingSince)
	}
	if len(s.Headers) > 0 || s.Method != "" {
		// Header values are write-only: names only.
		names := make(map[string]string, len(s.Headers))
		for name := range s.Headers {
			names[name] = ""
		}
		p.ProtocolSettings = &heraldv1.HttpSettings{Headers: names, Method: s.Method}
	}
	if len(s.Secrets) > 0 {
		newest := s.Secrets[0].Key
		if pub, err := signing.PublicKey(newest); err == nil {
			// Ed25519: the public key is no secret.
			p.SigningAlgorithm = heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_ED25519
			p.SigningPublicKey = pub
		} else {
			p.SigningSecretHint = secretHint(newest)
		}
	}
	return p
}

// secretHint shows enough of a secret to tell secrets apart, never enough
// to use it.
func secretHint(secret string) string {
	const shown = len("whsec_") + 4
	if len(secret) <= shown {
		return secret
	}
	return secret[:shown] + "..."
}

var deliveryStates = map[store.DeliveryState]heraldv1.DeliveryState{
	store.DeliveryPending:   heraldv1.DeliveryState_DELIVERY_STATE_PENDING,
	store.DeliveryInFlight:  heraldv1.DeliveryState_DELIVERY_STATE_IN_FLIGHT,
	store.DeliveryDelivered: heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED,
	store.DeliveryRetrying:  heraldv1.DeliveryState_DELIVERY_STATE_RETRYING,
	store.DeliveryDead:      heraldv1.DeliveryState_DELIVERY_STATE_DEAD,
	store.DeliveryHeld:      heraldv1.DeliveryState_DELIVERY_STATE_HELD,
}

func deliveryStateFromProto(s heraldv1.DeliveryState) store.DeliveryState {
	for k, v := range deliveryStates {
		if v == s {
			return k
		}
	}
	return ""
}

// statusClasses maps the API's status classes to the store's.
var statusClasses = map[heraldv1.StatusClass]store.StatusClass{
	heraldv1.StatusClass_STATUS_CLASS_UNSPECIFIED: store.AnyStatus,
	heraldv1.StatusClass_STATUS_CLASS_2XX:         store.Status2xx,
	heraldv1.StatusClass_STATUS_CLASS_3XX:         store.Status3xx,
	heraldv1.StatusClass_STATUS_CLASS_4XX:         store.Status4xx,
	heraldv1.StatusClass_STATUS_CLASS_5XX:         store.Status5xx,
	heraldv1.StatusClass_STATUS_CLASS_NO_RESPONSE: store.NoResponse,
}

func deliveryToProto(d *store.Delivery) *heraldv1.Delivery {
	p := &heraldv1.Delivery{
		Id:             d.ID,
		SubscriptionId: d.SubscriptionID,
		EventSource:    d.EventSource,
		EventId:        d.EventID,
		EventType:      d.EventType,
		State:          deliveryStates[d.State],
		WebhookId:      id.WebhookID(d.ID),
		Attempts:       int32(d.Attempts),
		LastStatusCode: int32(d.LastStatus),
		LastError:      d.LastError,
		CreateTime:     timestamppb.New(d.CreatedAt),
		UpdateTime:     timestamppb.New(d.UpdatedAt),
	}
	if d.State == store.DeliveryRetrying || d.State == store.DeliveryDead || d.Attempts > 1 {
		p.WorkflowId = workflows.WorkflowID(d.SubscriptionID, d.ID)
	}
	return p
}

func attemptToProto(a *store.Attempt) *heraldv1.Attempt {
	return &heraldv1.Attempt{
		Number:       int32(a.Number),
		StartTime:    timestamppb.New(a.StartedAt),
		StatusCode:   int32(a.StatusCode),
		Latency:      durationpb.New(a.Latency),
		Error:        a.Error,
		ResponseBody: a.ResponseBody,
	}
}

// Page tokens are the last ID of the previous page.
func pageSize(n int32) int {
	switch {
	case n <= 0:
		return policy.DefaultPageSize
	case n > policy.MaxPageSize:
		return policy.MaxPageSize
	}
	return int(n)
}
