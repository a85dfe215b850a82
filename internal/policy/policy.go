// Package policy holds Herald's delivery policy tables: how each HTTP
// outcome is classified, the retry defaults, and the limits.
package policy

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Limits are the limits an operator may change (flags of the same names,
// docs/operations.md); DefaultLimits holds their defaults.
type Limits struct {
	// MaxEventSize is the largest event accepted, in bytes of its
	// protobuf encoding.
	MaxEventSize int
	// MaxEventsPerPublish is the most events one Publish call (or ingest
	// batch) may carry.
	MaxEventsPerPublish int
	// MaxRequestSize is the largest gRPC request, and the largest batched
	// ingest body, in bytes.
	MaxRequestSize int
	// MaxSubscriptionsPerTenant is the most subscriptions a tenant may
	// have.
	MaxSubscriptionsPerTenant int
	// MaxHeadersPerSubscription is the most static headers a subscription
	// may set.
	MaxHeadersPerSubscription int
}

// DefaultLimits are the limits unless configured.
var DefaultLimits = Limits{
	MaxEventSize:              MaxEventSize,
	MaxEventsPerPublish:       MaxEventsPerPublish,
	MaxRequestSize:            MaxRequestSize,
	MaxSubscriptionsPerTenant: MaxSubscriptionsPerTenant,
	MaxHeadersPerSubscription: MaxHeadersPerSubscription,
}

// WithDefaults returns l with its zero fields set from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.MaxEventSize > 0 {
		d.MaxEventSize = l.MaxEventSize
	}
	if l.MaxEventsPerPublish > 0 {
		d.MaxEventsPerPublish = l.MaxEventsPerPublish
	}
	if l.MaxRequestSize > 0 {
		d.MaxRequestSize = l.MaxRequestSize
	}
	if l.MaxSubscriptionsPerTenant > 0 {
		d.MaxSubscriptionsPerTenant = l.MaxSubscriptionsPerTenant
	}
	if l.MaxHeadersPerSubscription > 0 {
		d.MaxHeadersPerSubscription = l.MaxHeadersPerSubscription
	}
	return d
}

// The default limits, and the limits that are constants of the build.
const (
	// MaxEventSize is the default of Limits.MaxEventSize: 256 KiB.
	MaxEventSize = 256 << 10
	// MaxEventsPerPublish is the default of Limits.MaxEventsPerPublish.
	MaxEventsPerPublish = 1000
	// MaxResponseBody is how much of a receiver's response body is kept
	// with each attempt.
	MaxResponseBody = 4 << 10
	// RequestTimeout is how long one delivery request may take.
	RequestTimeout = 15 * time.Second
	// ValidationRecheck is how soon a delivery to a subscription still
	// waiting for its sink's consent (the validation handshake) is looked
	// at again.
	ValidationRecheck = 10 * time.Second
	// MaxRetryAfter is the longest Retry-After honoured; longer ones are
	// cut to it (the delivery's maximum age still applies).
	MaxRetryAfter = 24 * time.Hour
	// MaxRequestSize is the default of Limits.MaxRequestSize: room for
	// MaxEventsPerPublish events of 16 KiB, or fewer larger ones.
	MaxRequestSize = 16 << 20
	// DefaultRedriveRate is how many dead letters RedriveDeadLetters
	// redrives a second unless asked; MaxRedriveRate the most it may.
	DefaultRedriveRate = 10
	MaxRedriveRate     = 1000
	// A retry policy's intervals lie between MinRetryInterval and
	// MaxRetryInterval, its attempts at most MaxRetryAttempts, its age at
	// most MaxRetryAge and its backoff coefficient at most
	// MaxBackoffCoefficient: no subscription can ask for a retry storm.
	MinRetryInterval      = 100 * time.Millisecond
	MaxRetryInterval      = 7 * 24 * time.Hour
	MaxRetryAttempts      = 100
	MaxRetryAge           = 7 * 24 * time.Hour
	MaxBackoffCoefficient = 100.0
	// MaxFilterLength is the longest CESQL filter expression accepted, in
	// bytes; MaxFilterDepth the deepest nesting of its expressions, and
	// MaxFilterCalls the most function calls in it.
	MaxFilterLength = 4096
	MaxFilterDepth  = 32
	MaxFilterCalls  = 64
	// MaxFilterValue is the longest string a CESQL filter may build while
	// it is evaluated (CONCAT, CONCAT_WS, ...); an evaluation that would
	// build a longer one is false.
	MaxFilterValue = 64 << 10
)

// ContentMode is how an event is encoded in a delivery request.
type ContentMode string

const (
	// ContentBinary puts the data in the body and every attribute in a
	// ce- header (CloudEvents HTTP binary mode). The default.
	ContentBinary ContentMode = "binary"
	// ContentStructured sends application/cloudevents+json.
	ContentStructured ContentMode = "structured"
	// ContentBatched sends several events in one
	// application/cloudevents-batch+json request, for sinks that ask for it.
	ContentBatched ContentMode = "batched"
)

// DefaultMaxBatchSize is the most events in one batched request when the
// subscription does not say; MaxBatchSize the most it may say.
const (
	DefaultMaxBatchSize = 100
	MaxBatchSize        = 1000
)

// List pages: DefaultPageSize items unless the request asks for another
// size, at most MaxPageSize.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Retry says how a delivery whose first attempt failed is retried. Zero
// fields take the value in DefaultRetry.
type Retry struct {
	InitialInterval    time.Duration `json:"initial_interval,omitempty"`
	BackoffCoefficient float64       `json:"backoff_coefficient,omitempty"`
	MaximumInterval    time.Duration `json:"maximum_interval,omitempty"`
	// MaximumAttempts counts every attempt, the first included.
	MaximumAttempts int `json:"maximum_attempts,omitempty"`
	// MaximumAge is how long after publish the last attempt may start.
	MaximumAge time.Duration `json:"maximum_age,omitempty"`
	// PermanentStatus and RetryableStatus override Classify's table for
	// these HTTP status codes.
	PermanentStatus []int `json:"permanent_status,omitempty"`
	RetryableStatus []int `json:"retryable_status,omitempty"`
}

// DefaultRetry is 8 attempts over up to a day, in the range Svix and Azure
// Event Grid use: retry waits of up to 5s, 30s, 3m, 18m, 1.8h, 10h, 10h
// (full jitter draws each wait uniformly below its cap).
var DefaultRetry = Retry{
	InitialInterval:    5 * time.Second,
	BackoffCoefficient: 6,
	MaximumInterval:    10 * time.Hour,
	MaximumAttempts:    8,
	MaximumAge:         24 * time.Hour,
}

// WithDefaults returns r with its zero fields set from DefaultRetry.
func (r Retry) WithDefaults() Retry {
	d := DefaultRetry
	if r.InitialInterval > 0 {
		d.InitialInterval = r.InitialInterval
	}
	if r.BackoffCoefficient >= 1 {
		d.BackoffCoefficient = r.BackoffCoefficient
	}
	if r.MaximumInterval > 0 {
		d.MaximumInterval = r.MaximumInterval
	}
	if r.MaximumAttempts > 0 {
		d.MaximumAttempts = r.MaximumAttempts
	}
	if r.MaximumAge > 0 {
		d.MaximumAge = r.MaximumAge
	}
	d.PermanentStatus = r.PermanentStatus
	d.RetryableStatus = r.RetryableStatus
	return d
}

// Cap returns the most a delivery waits before retry number n (1 for the
// wait after the first attempt): InitialInterval * BackoffCoefficient^(n-1),
// at most MaximumInterval. The wait itself is drawn uniformly from
// [0, Cap(n)] (full jitter); r must have its defaults applied.
func (r Retry) Cap(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	c := float64(r.InitialInterval) * math.Pow(r.BackoffCoefficient, float64(n-1))
	if c > float64(r.MaximumInterval) || math.IsInf(c, 0) || math.IsNaN(c) {
		return r.MaximumInterval
	}
	return time.Duration(c)
}

// Outcome is what one delivery attempt's result means for the delivery.
type Outcome string

const (
	// Delivered: the receiver accepted the event.
	Delivered Outcome = "delivered"
	// Retryable: try again after a backoff.
	Retryable Outcome = "retryable"
	// Permanent: retrying cannot help; dead-letter the delivery now.
	Permanent Outcome = "permanent"
	// Gone: the receiver is retired (410); dead-letter the delivery and
	// disable the subscription.
	Gone Outcome = "gone"
)

// statusTable is the classification of HTTP status codes that are not
// decided by their class alone. 2xx is Delivered; 3xx and other 4xx are
// Permanent; 5xx is Retryable.
var statusTable = map[int]Outcome{
	http.StatusNotFound:        Retryable, // often a deploy in progress
	http.StatusRequestTimeout:  Retryable,
	http.StatusConflict:        Retryable,
	http.StatusTooEarly:        Retryable,
	http.StatusTooManyRequests: Retryable, // and honour Retry-After
	http.StatusGone:            Gone,
}

// Classify says what an HTTP status means. status 0 (no response:
// connection, TLS or timeout error) is Retryable. The overrides in r take
// precedence over the table.
func (r Retry) Classify(status int) Outcome {
	if status >= 200 && status < 300 {
		return Delivered
	}
	for _, s := range r.PermanentStatus {
		if s == status {
			return Permanent
		}
	}
	for _, s := range r.RetryableStatus {
		if s == status {
			return Retryable
		}
	}
	if o, ok := statusTable[status]; ok {
		return o
	}
	switch {
	case status == 0, status >= 500:
		return Retryable
	default: // 1xx, 3xx (redirects are never followed), 4xx
		return Permanent
	}
}

// PausesSink reports whether a Retry-After on this status holds back every
// delivery to the sink, not only the one that got it.
func PausesSink(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// ParseRetryAfter reads a Retry-After header value: delay-seconds or an
// HTTP-date, at most MaxRetryAfter. It returns 0 when the value is absent,
// invalid or in the past.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		if secs > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxRetryAfter)
		}
	}
	return 0
}

// Tenants and API keys.
const (
	// MaxSubscriptionsPerTenant is the default of
	// Limits.MaxSubscriptionsPerTenant.
	MaxSubscriptionsPerTenant = 10_000
	// MaxTenantLength is the longest tenant id.
	MaxTenantLength = 64
	// MaxKeyNameLength is the longest API key display name, and
	// MaxPublishRate the highest publish rate a key may be given (events
	// per second).
	MaxKeyNameLength = 200
	MaxPublishRate   = 1_000_000
	// MaxHeadersPerSubscription is the default of
	// Limits.MaxHeadersPerSubscription; MaxHeaderValueLength is the
	// longest header value.
	MaxHeadersPerSubscription = 32
	MaxHeaderValueLength      = 4096
)

// ValidTenant reports whether s is a tenant id: 1 to MaxTenantLength
// lower-case letters, digits, '.', '_' or '-', starting with a letter or
// digit.
func ValidTenant(s string) bool {
	if s == "" || len(s) > MaxTenantLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Limits of the HTTP edge's requests.
const (
	// HTTPReadTimeout bounds reading a whole request (the largest batch
	// body at a modest 1 MB/s); HTTPWriteTimeout bounds a handler and its
	// answer.
	HTTPReadTimeout  = 30 * time.Second
	HTTPWriteTimeout = 60 * time.Second
	// MaxHeaderBytes bounds a request's header.
	MaxHeaderBytes = 64 << 10
)

// HandshakeTimeout bounds a new connection's TLS handshake and HTTP/2
// preface on the gRPC listener.
const HandshakeTimeout = 10 * time.Second

// Limits of the validation handshake's callback grants, when Herald is the
// receiver (server's ingest).
const (
	// CallbackTimeout bounds one callback grant request, and
	// MaxCallbacksInFlight how many are sent at once.
	CallbackTimeout      = 30 * time.Second
	MaxCallbacksInFlight = 16
	// MaxCallbackURL is the longest callback URL accepted.
	MaxCallbackURL = 2048
)

// EventListSettle is how long an event is stored before ListEvents lists
// it: a cursor never passes an event whose transaction committed late
// (concurrent commits on PostgreSQL, clocks of nodes a little apart).
const EventListSettle = 5 * time.Second

// Labels of subscriptions: at most MaxLabels, keys of 1 to 63 lower-case
// letters, digits, '.', '_', '-' or '/' starting with a letter or digit,
// values at most MaxLabelValue bytes; a description at most
// MaxDescriptionLength bytes.
const (
	MaxLabels            = 32
	MaxLabelValue        = 256
	MaxDescriptionLength = 2000
)

// CheckLabels returns why labels are not acceptable, or nil.
func CheckLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%d labels; at most %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if !validLabelKey(k) {
			return fmt.Errorf("label key %q: want 1 to 63 lower-case letters, digits, '.', '_', '-' or '/'", k)
		}
		if len(v) > MaxLabelValue {
			return fmt.Errorf("label %s: value longer than %d bytes", k, MaxLabelValue)
		}
	}
	return nil
}

func validLabelKey(k string) bool {
	if k == "" || len(k) > 63 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-' || c == '/'):
		default:
			return false
		}
	}
	return true
}
