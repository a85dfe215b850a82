package attempt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/signing"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
)

func entry(t *testing.T, sink string, mode policy.ContentMode) *catalog.Entry {
	t.Helper()
	en, err := catalog.NewEntry(&store.Subscription{ID: "sub_1", Sink: sink, ContentMode: mode, SkipValidation: true,
		Secrets: []store.Secret{{Key: signing.NewSecret()}}})
	if err != nil {
		t.Fatal(err)
	}
	return en
}

func stored(t *testing.T, id string) *store.Delivery {
	t.Helper()
	payload, err := proto.Marshal(&cloudeventsv1.CloudEvent{Id: id, Source: "/s", SpecVersion: "1.0", Type: "t",
		Data: &cloudeventsv1.CloudEvent_TextData{TextData: `{"n":1}`}})
	if err != nil {
		t.Fatal(err)
	}
	return &store.Delivery{ID: "dlv_" + id, SubscriptionID: "sub_1", EventPayload: payload}
}

func TestDo_ABatchSendsWhatItCanAndFailsTheRestAlone(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	a := &Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{})}
	bad := stored(t, "bad")
	bad.EventPayload = []byte("not protobuf")
	ds := []*store.Delivery{stored(t, "a"), bad, stored(t, "b")}
	results, err := a.Do(context.Background(), ds, nil, entry(t, rcv.URL, policy.ContentBatched), 1, noDeadline)
	if err != nil {
		t.Fatal(err)
	}
	if results[1].Outcome != policy.Permanent || !strings.Contains(results[1].Record.Error, "decode") {
		t.Errorf("the undecodable event: %+v, want permanent with why", results[1])
	}
	for _, i := range []int{0, 2} {
		if results[i].Outcome != policy.Delivered || results[i].Record.StatusCode != http.StatusNoContent {
			t.Errorf("event %d: %+v, want delivered", i, results[i])
		}
	}
	reqs := rcv.Requests()
	if len(reqs) != 1 || strings.Count(string(reqs[0].Body), `"specversion"`) != 2 {
		t.Errorf("the sink got %d requests (%q), want one batch of the 2 good events", len(reqs), reqs)
	}
}

func TestDo_SendsNothingWhileTheOriginsBreakerIsOpen(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { panic(http.ErrAbortHandler) })
	a := &Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{BreakerThreshold: 1})}
	en := entry(t, rcv.URL, policy.ContentBinary)
	res, err := a.Do(context.Background(), []*store.Delivery{stored(t, "1")}, nil, en, 1, noDeadline)
	if err != nil || res[0].Outcome != policy.Retryable || res[0].Record.StatusCode != 0 {
		t.Fatalf("first attempt: %+v, %v; want retryable without a status", res, err)
	}
	_, err = a.Do(context.Background(), []*store.Delivery{stored(t, "2")}, nil, en, 1, noDeadline)
	if r, ok := scheduler.AsRefused(err); !ok || r.Reason != scheduler.ReasonBreakerOpen || r.Until.IsZero() {
		t.Fatalf("second attempt: %v, want refused by the open breaker", err)
	}
	if n := len(rcv.Requests()); n != 1 {
		t.Errorf("the sink got %d requests, want only the first", n)
	}
}

func TestSignal_ReadsResultsForTheScheduler(t *testing.T) {
	for _, tt := range []struct {
		res  delivery.Result
		want scheduler.Signal
	}{
		{delivery.Result{StatusCode: 204}, scheduler.Answered},
		{delivery.Result{StatusCode: 200}, scheduler.Answered},
		{delivery.Result{StatusCode: 500}, scheduler.Failed},
		{delivery.Result{StatusCode: 410}, scheduler.Failed},
		{delivery.Result{StatusCode: 429}, scheduler.Overloaded},
		{delivery.Result{StatusCode: 503}, scheduler.Overloaded},
		{delivery.Result{Err: errors.New("dial tcp: connection refused")}, scheduler.Unreachable},
		{delivery.Result{Err: context.DeadlineExceeded}, scheduler.Unreachable},
		{delivery.Result{Err: fmt.Errorf("%w: no event", delivery.ErrInvalidRequest)}, scheduler.Failed},
	} {
		if got := signal(tt.res); got != tt.want {
			t.Errorf("signal(%+v) = %d, want %d", tt.res, got, tt.want)
		}
	}
}

var noDeadline time.Time

// TestDo_LogsEachFailedAttemptWithoutSecretsOrData: a failed attempt is
// one info line naming the delivery, subscription, tenant, sink host,
// status and outcome; a delivered one is at debug; neither carries the
// bearer token, a header value or the event's data.
func TestDo_LogsEachFailedAttemptWithoutSecretsOrData(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, func(n int, _ *http.Request) (int, http.Header) {
		if n == 0 {
			return http.StatusBadGateway, nil
		}
		return http.StatusNoContent, nil
	})
	var buf bytes.Buffer
	a := &Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{}),
		Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	en, err := catalog.NewEntry(&store.Subscription{ID: "sub_1", Tenant: "acme", Sink: rcv.URL, SkipValidation: true,
		BearerToken: "hbt_secret-token", Headers: map[string]string{"X-Api-Key": "header-secret"},
		Secrets: []store.Secret{{Key: signing.NewSecret()}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := a.Do(context.Background(), []*store.Delivery{stored(t, "x")}, nil, en, 1, noDeadline); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines at info, want 1 (the failure):\n%s", len(lines), buf.String())
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"delivery": "dlv_x", "subscription": "sub_1", "tenant": "acme", "status": 502.0, "outcome": "retryable", "attempt": 1.0} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v", k, line[k], want)
		}
	}
	if h, _ := line["sink_host"].(string); !strings.HasPrefix(h, "127.0.0.1:") {
		t.Errorf("sink_host = %v", line["sink_host"])
	}
	for _, secret := range []string{"hbt_secret-token", "header-secret", `{"n":1}`, `\"n\"`} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}
