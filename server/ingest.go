package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/cevent"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/publish"
)

// IngestPath is where the HTTP edge receives CloudEvents.
const IngestPath = "/v1/events"

// Body limits of POST /v1/events, by CloudEvents HTTP mode, follow the
// limits (policy.Limits): a binary-mode body (the event's data) at most
// MaxEventSize, a structured one twice that (room for JSON escaping and
// base64), a batch MaxRequestSize and MaxEventsPerPublish events. Whatever
// the mode, each event must also fit MaxEventSize in its protobuf
// encoding (413 otherwise).

// IngestOptions configure the CloudEvents webhook receiver.
type IngestOptions struct {
	// Auth authenticates senders by their API key (publish scope), sent
	// as "Authorization: Bearer <key>" or, as the CloudEvents webhook spec
	// also requires targets to accept, as the access_token query
	// parameter; nil accepts every sender (`herald dev` without an admin
	// key).
	Auth Authenticator
	// AllowedOrigins are the sender DNS names whose validation handshake
	// (OPTIONS with WebHook-Request-Origin) is granted. Matching is exact
	// and case-insensitive; there are no wildcards.
	AllowedOrigins []string
	// Rate is the WebHook-Allowed-Rate granted, in requests per minute;
	// 0 grants "*" (no limit). It is advisory: it is not enforced.
	Rate int
	// AutoGrantCallbacks grants a handshake that carries
	// WebHook-Request-Callback by POSTing to the callback URL, instead of
	// in the OPTIONS response. The callback URL must be https and its host
	// must be the origin or a subdomain of it.
	AutoGrantCallbacks bool
	// Limits bound bodies and events (zero fields: policy.DefaultLimits).
	Limits policy.Limits
	// CallbackClient sends callback grants; nil uses a client with a
	// CallbackTimeout timeout. Redirects are never followed.
	CallbackClient *http.Client
	Logger         *slog.Logger
}

// Ingest is Herald's CloudEvents webhook receiver, served at IngestPath:
// POST takes events in binary, structured or batched mode and publishes
// them through the same Publisher as the gRPC API; OPTIONS answers the
// CloudEvents webhook validation handshake. Close it to stop the callback
// grants in flight.
//
// Every POST that publishes answers 200 with a JSON IngestResponse, in
// every mode (one result per event, in request order). Errors are
// application/problem+json (RFC 9457) bodies, see Problem: 400 for a
// malformed request or invalid events (the violations name the fields,
// e.g. "events[0].type"), 401 without a valid key, 403 for a key without
// the publish scope, 405 for other methods, 413 when too large, 415 for
// an unsupported event format, 429 (with Retry-After) for a key over its
// publish rate, 503 when the publisher is closed or the store fails.
type Ingest struct {
	publisher *publish.Publisher
	opts      IngestOptions
	client    *http.Client

	ctx       context.Context // ends on Close; parent of callback grants
	cancel    context.CancelFunc
	callbacks chan struct{} // one token per callback grant in flight
	mu        sync.Mutex    // guards closed and adding to inFlight
	closed    bool
	inFlight  sync.WaitGroup
}

// NewIngest returns the receiver over p.
func NewIngest(p *publish.Publisher, opts IngestOptions) *Ingest {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Limits = opts.Limits.WithDefaults()
	in := &Ingest{publisher: p, opts: opts, callbacks: make(chan struct{}, MaxCallbacksInFlight)}
	client := http.Client{Timeout: CallbackTimeout}
	if opts.CallbackClient != nil {
		client = *opts.CallbackClient
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	in.client = &client
	in.ctx, in.cancel = context.WithCancel(context.Background())
	return in
}

// Close cancels the callback grants in flight and waits for them.
func (in *Ingest) Close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
	in.cancel()
	in.inFlight.Wait()
}

const allowedMethods = "POST, OPTIONS"

// ServeHTTP implements http.Handler.
func (in *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		in.servePost(w, r)
	case http.MethodOptions:
		in.serveOptions(w, r)
	default:
		w.Header().Set("Allow", allowedMethods)
		writeProblem(w, http.StatusMethodNotAllowed, r.Method+" is not allowed; use POST (or OPTIONS for the validation handshake)", nil)
	}
}

// IngestResponse is the body of a successful POST.
type IngestResponse struct {
	Results []IngestResult `json:"results"`
}

// IngestResult is the outcome of one event.
type IngestResult struct {
	Source string `json:"source"`
	ID     string `json:"id"`
	// Status is "accepted", or "duplicate" when an event with the same
	// source and id was published before (nothing new is delivered).
	Status      string   `json:"status"`
	DeliveryIDs []string `json:"delivery_ids"`
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Status     int         `json:"status"`
	Detail     string      `json:"detail,omitempty"`
	Violations []Violation `json:"violations,omitempty"`
}

// Violation names one invalid field of a request.
type Violation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

func (in *Ingest) servePost(w http.ResponseWriter, r *http.Request) {
	p, viaQuery, code, msg := httpPrincipal(in.opts.Auth, r, true)
	if code == 0 && p.Authorize(policy.ScopeIngest) != nil {
		code, msg = http.StatusForbidden, permissionMsg
	}
	if code != 0 {
		refuseHTTP(w, code, msg)
		return
	}
	// The body is read whole before the call is announced to the
	// publisher: a client that trickles its body holds no group commit.
	events, err := cehttp.ReadRequest(r, in.bodyLimit(r.Header.Get("Content-Type")))
	defer in.publisher.Arriving()()
	switch {
	case err == nil:
	case errors.Is(err, cehttp.ErrTooLarge):
		writeProblem(w, http.StatusRequestEntityTooLarge, errorDetail(err), nil)
		return
	case errors.Is(err, cehttp.ErrUnsupportedFormat):
		writeProblem(w, http.StatusUnsupportedMediaType, errorDetail(err)+"; use application/cloudevents+json, application/cloudevents-batch+json or binary mode", nil)
		return
	default: // malformed, or the body could not be read
		writeProblem(w, http.StatusBadRequest, errorDetail(err), nil)
		return
	}
	if max := in.opts.Limits.MaxEventsPerPublish; len(events) > max {
		writeProblem(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%d events in the batch; at most %d", len(events), max), nil)
		return
	}
	pes := make([]*cloudeventsv1.CloudEvent, len(events))
	for i, e := range events {
		field := "events[" + strconv.Itoa(i) + "]"
		pe, err := cevent.ToProto(e)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "invalid event", []Violation{{Field: field, Description: err.Error()}})
			return
		}
		if size, max := proto.Size(pe), in.opts.Limits.MaxEventSize; size > max {
			writeProblem(w, http.StatusRequestEntityTooLarge, "event too large", []Violation{{Field: field,
				Description: fmt.Sprintf("event is %d bytes; the limit is %d", size, max)}})
			return
		}
		pes[i] = pe
	}
	if wait, ok := p.ReservePublish(len(pes), time.Now()); !ok {
		metrics.PublishLimited.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeProblem(w, http.StatusTooManyRequests, fmt.Sprintf("the API key is over its publish rate; retry in %s", wait.Round(time.Millisecond)), nil)
		return
	}
	results, err := in.publisher.Publish(r.Context(), p.Tenant, pes)
	if err != nil {
		in.writePublishError(w, r, err)
		return
	}
	resp := IngestResponse{Results: make([]IngestResult, len(results))}
	for i, res := range results {
		st := "accepted"
		if res.Duplicate {
			st = "duplicate"
		}
		ids := res.DeliveryIDs
		if ids == nil {
			ids = []string{}
		}
		resp.Results[i] = IngestResult{Source: res.Source, ID: res.ID, Status: st, DeliveryIDs: ids}
	}
	if viaQuery {
		w.Header().Set("Cache-Control", "private")
	}
	writeJSON(w, http.StatusOK, "application/json", resp)
}

func (in *Ingest) writePublishError(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *publish.InvalidError
	switch {
	case errors.As(err, &invalid):
		vs := make([]Violation, len(invalid.Violations))
		for i, v := range invalid.Violations {
			vs[i] = Violation{Field: v.Field, Description: v.Description}
		}
		writeProblem(w, http.StatusBadRequest, "invalid events", vs)
	case errors.Is(err, publish.ErrClosed):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, "herald is shutting down; retry on another node", nil)
	case r.Context().Err() != nil:
		// The client is gone; nobody reads this.
		writeProblem(w, http.StatusServiceUnavailable, "request canceled", nil)
	default:
		in.opts.Logger.Error("ingest: publish", "err", err)
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, "events could not be stored; retry", nil)
	}
}

// bodyLimit is the body limit of the CloudEvents HTTP mode that ct
// selects (the same detection as cehttp.ReadRequest).
func (in *Ingest) bodyLimit(ct string) int64 {
	l := in.opts.Limits
	switch {
	case hasPrefixFold(ct, "application/cloudevents-batch"):
		return int64(l.MaxRequestSize)
	case hasPrefixFold(ct, "application/cloudevents"):
		return 2 * int64(l.MaxEventSize)
	default:
		return int64(l.MaxEventSize)
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// errorDetail is err's message without its "cehttp: " prefixes.
func errorDetail(err error) string {
	return strings.ReplaceAll(err.Error(), "cehttp: ", "")
}

func writeProblem(w http.ResponseWriter, status int, detail string, vs []Violation) {
	writeJSON(w, status, "application/problem+json", Problem{
		Type:       "about:blank",
		Title:      http.StatusText(status),
		Status:     status,
		Detail:     detail,
		Violations: vs,
	})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: only structs of strings and ints
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
