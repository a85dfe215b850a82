package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/policy"
)

// subscriptionDocument is the stored JSON form of the subscription fields
// that have no column of their own. Every driver stores it as is; its keys
// are part of the schema.
type subscriptionDocument struct {
	Tenant         string              `json:"tenant,omitempty"`
	DisplayName    string              `json:"display_name,omitempty"`
	Description    string              `json:"description,omitempty"`
	Labels         map[string]string   `json:"labels,omitempty"`
	Source         string              `json:"source,omitempty"`
	Types          []string            `json:"types,omitempty"`
	Config         map[string]string   `json:"config,omitempty"`
	Filters        []filter.Expression `json:"filters,omitempty"`
	Sink           string              `json:"sink"`
	Protocol       string              `json:"protocol,omitempty"`
	Headers        map[string]string   `json:"headers,omitempty"`
	Method         string              `json:"method,omitempty"`
	StateReason    string              `json:"state_reason,omitempty"`
	Secrets        []Secret            `json:"secrets,omitempty"`
	BearerToken    string              `json:"bearer_token,omitempty"`
	RetryPolicy    policy.Retry        `json:"retry_policy"`
	ContentMode    policy.ContentMode  `json:"content_mode,omitempty"`
	MaxBatchSize   int                 `json:"max_batch_size,omitempty"`
	RateLimit      int                 `json:"rate_limit,omitempty"`
	AllowedRate    int                 `json:"allowed_rate,omitempty"`
	MaxConcurrency int                 `json:"max_concurrency,omitempty"`
	SkipValidation bool                `json:"skip_validation,omitempty"`
	// SubscriptionPauseOnly is store.Subscription's.
	SubscriptionPauseOnly bool          `json:"subscription_pause_only,omitempty"`
	Validation            *Validation   `json:"validation,omitempty"`
	PausedUntil           *time.Time    `json:"paused_until,omitempty"`
	SuspendAfter          time.Duration `json:"suspend_after,omitempty"`
	FailingSince          *time.Time    `json:"failing_since,omitempty"`
}

// EncodeSubscriptionDocument returns the JSON document a driver stores for
// s's fields that have no column of their own (all but ID, State,
// CreatedAt and UpdatedAt).
func EncodeSubscriptionDocument(s *Subscription) ([]byte, error) {
	d := subscriptionDocument{
		Tenant:         s.Tenant,
		DisplayName:    s.DisplayName,
		Description:    s.Description,
		Labels:         s.Labels,
		Source:         s.Source,
		Types:          s.Types,
		Config:         s.Config,
		Filters:        s.Filters,
		Sink:           s.Sink,
		Protocol:       s.Protocol,
		Headers:        s.Headers,
		Method:         s.Method,
		StateReason:    s.StateReason,
		Secrets:        s.Secrets,
		BearerToken:    s.BearerToken,
		RetryPolicy:    s.RetryPolicy,
		ContentMode:    s.ContentMode,
		MaxBatchSize:   s.MaxBatchSize,
		RateLimit:      s.RateLimit,
		AllowedRate:    s.AllowedRate,
		MaxConcurrency: s.MaxConcurrency,
		SkipValidation: s.SkipValidation,
		Validation:     s.Validation,

		SubscriptionPauseOnly: s.SubscriptionPauseOnly,
		SuspendAfter:          s.SuspendAfter,
	}
	if !s.PausedUntil.IsZero() {
		t := s.PausedUntil.UTC()
		d.PausedUntil = &t
	}
	if !s.FailingSince.IsZero() {
		t := s.FailingSince.UTC()
		d.FailingSince = &t
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode subscription %s: %w", s.ID, err)
	}
	return b, nil
}

// DecodeSubscriptionDocument fills s's document fields from b.
func DecodeSubscriptionDocument(b []byte, s *Subscription) error {
	var d subscriptionDocument
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("decode subscription %s: %w", s.ID, err)
	}
	s.Tenant = d.Tenant
	s.DisplayName, s.Description, s.Labels = d.DisplayName, d.Description, d.Labels
	if s.Tenant == "" {
		s.Tenant = DefaultTenant // stored before tenants existed
	}
	s.Source = d.Source
	s.Types = d.Types
	s.Config = d.Config
	s.Filters = d.Filters
	s.Sink = d.Sink
	s.Protocol = d.Protocol
	s.Headers = d.Headers
	s.Method = d.Method
	s.StateReason = d.StateReason
	s.Secrets = d.Secrets
	s.BearerToken = d.BearerToken
	s.RetryPolicy = d.RetryPolicy
	s.ContentMode = d.ContentMode
	s.MaxBatchSize = d.MaxBatchSize
	s.RateLimit = d.RateLimit
	s.AllowedRate = d.AllowedRate
	s.MaxConcurrency = d.MaxConcurrency
	s.SkipValidation = d.SkipValidation
	s.SubscriptionPauseOnly = d.SubscriptionPauseOnly
	s.Validation = d.Validation
	s.PausedUntil = time.Time{}
	if d.PausedUntil != nil {
		s.PausedUntil = d.PausedUntil.UTC()
	}
	s.SuspendAfter = d.SuspendAfter
	s.FailingSince = time.Time{}
	if d.FailingSince != nil {
		s.FailingSince = d.FailingSince.UTC()
	}
	return nil
}

// apiKeyDocument is the stored JSON form of an API key's fields that have
// no column of their own.
type apiKeyDocument struct {
	DisplayName        string         `json:"display_name,omitempty"`
	Scopes             []policy.Scope `json:"scopes"`
	Tenant             string         `json:"tenant,omitempty"`
	ExpiresAt          *time.Time     `json:"expires_at,omitempty"`
	Hint               string         `json:"hint,omitempty"`
	PublishRate        float64        `json:"publish_rate,omitempty"`
	PublishBurst       int            `json:"publish_burst,omitempty"`
	CertificateSubject string         `json:"certificate_subject,omitempty"`
}

// EncodeAPIKeyDocument returns the JSON document a driver stores for k's
// fields that have no column of their own (all but ID, Hash and
// CreatedAt).
func EncodeAPIKeyDocument(k *APIKey) ([]byte, error) {
	d := apiKeyDocument{
		DisplayName:        k.DisplayName,
		Scopes:             k.Scopes,
		Tenant:             k.Tenant,
		Hint:               k.Hint,
		PublishRate:        k.PublishRate,
		PublishBurst:       k.PublishBurst,
		CertificateSubject: k.CertificateSubject,
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt.UTC()
		d.ExpiresAt = &t
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode API key %s: %w", k.ID, err)
	}
	return b, nil
}

// DecodeAPIKeyDocument fills k's document fields from b.
func DecodeAPIKeyDocument(b []byte, k *APIKey) error {
	var d apiKeyDocument
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("decode API key %s: %w", k.ID, err)
	}
	k.DisplayName, k.Scopes, k.Tenant, k.Hint = d.DisplayName, d.Scopes, d.Tenant, d.Hint
	k.PublishRate, k.PublishBurst, k.CertificateSubject = d.PublishRate, d.PublishBurst, d.CertificateSubject
	k.ExpiresAt = time.Time{}
	if d.ExpiresAt != nil {
		k.ExpiresAt = d.ExpiresAt.UTC()
	}
	return nil
}
