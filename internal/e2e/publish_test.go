package e2e

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/publisher"
	"github.com/heraldhq/herald/clients/signing"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/policy"
)

const wait = 60 * time.Second // liveness bound for waits; never a speed assertion

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

type attrValue = cloudeventsv1.CloudEvent_CloudEventAttributeValue

func str(s string) *attrValue {
	return &attrValue{Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: s}}
}

// newEvent is a valid event of type com.example.order.created.
func newEvent(id string) *cloudeventsv1.CloudEvent {
	return &cloudeventsv1.CloudEvent{
		Id:          id,
		Source:      "/orders",
		SpecVersion: "1.0",
		Type:        "com.example.order.created",
		Attributes: map[string]*attrValue{
			"datacontenttype": str("application/json"),
			"subject":         str("Euro € 😀"),
			"tenant":          str("acme corp"),
		},
		Data: &cloudeventsv1.CloudEvent_TextData{TextData: `{"order":42}`},
	}
}

func createSub(t *testing.T, n *testNode, sink string, mutate ...func(*heraldv1.Subscription)) *heraldv1.Subscription {
	t.Helper()
	s := &heraldv1.Subscription{
		Sink:     sink,
		Protocol: "HTTP",
		Types:    []string{"com.example.order.created"},
		// heraldtest.Receiver does not answer the validation handshake;
		// handshake_test.go covers it.
		SkipValidation: true,
		// Short waits so retries happen within a test.
		RetryPolicy: &heraldv1.RetryPolicy{
			InitialInterval: durationpb.New(500 * time.Millisecond),
			MaximumInterval: durationpb.New(time.Second),
		},
	}
	for _, m := range mutate {
		m(s)
	}
	out, err := n.subs.CreateSubscription(ctx(t), &heraldv1.CreateSubscriptionRequest{Subscription: s})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func publish(t *testing.T, n *testNode, events ...*cloudeventsv1.CloudEvent) []*heraldv1.PublishResult {
	t.Helper()
	resp, err := n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetResults()
}

func waitDeliveryState(t *testing.T, n *testNode, id string, want heraldv1.DeliveryState) *heraldv1.Delivery {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		d, err := n.deliveries.GetDelivery(ctx(t), &heraldv1.GetDeliveryRequest{Id: id})
		if err == nil && d.GetState() == want {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %s is not %s after %s: %v (err %v)", id, want, wait, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPublish_DeliveredOnceSignedWithEncodedHeaders(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL)
	if !strings.HasPrefix(sub.GetSigningSecret(), "whsec_") {
		t.Fatalf("create returned secret %q, want whsec_...", sub.GetSigningSecret())
	}

	res := publish(t, n, newEvent("evt-1"))
	if len(res) != 1 || res[0].GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_ACCEPTED || len(res[0].GetDeliveryIds()) != 1 {
		t.Fatalf("publish results = %v", res)
	}
	d := waitDeliveryState(t, n, res[0].GetDeliveryIds()[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	reqs := rcv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want exactly 1", len(reqs))
	}
	r := reqs[0]

	// Standard Webhooks: checked by Herald's verifier and the reference library.
	if got := r.Header.Get("webhook-id"); got != d.GetWebhookId() || strings.Contains(got, ".") {
		t.Errorf("webhook-id = %q, want %q without '.'", got, d.GetWebhookId())
	}
	v, err := signing.NewVerifier(sub.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(r.Header, r.Body, time.Now()); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	ref, err := standardwebhooks.NewWebhook(sub.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Verify(r.Body, r.Header); err != nil {
		t.Errorf("reference library rejects the signature: %v", err)
	}

	// CloudEvents binary mode: percent-encoded ce- headers decode back.
	if got := r.Header.Get("ce-subject"); got != "Euro%20%E2%82%AC%20%F0%9F%98%80" {
		t.Errorf("ce-subject = %q, want the percent-encoded form", got)
	}
	req, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(r.Body))
	req.Header = r.Header
	evs, err := cehttp.ReadRequest(req, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0]
	if e.ID() != "evt-1" || e.Source() != "/orders" || e.Type() != "com.example.order.created" ||
		e.Subject() != "Euro € 😀" || e.Extensions()["tenant"] != "acme corp" || string(e.Data()) != `{"order":42}` {
		t.Errorf("decoded event = %v", e)
	}
}

func TestPublish_DuplicateSourceAndIDDeliversOnce(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)

	first := publish(t, n, newEvent("evt-dup"))
	second := publish(t, n, newEvent("evt-dup"), newEvent("evt-dup"))
	if second[0].GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE ||
		second[1].GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE {
		t.Fatalf("republish statuses = %v, want DUPLICATE", second)
	}
	if got, want := second[0].GetDeliveryIds(), first[0].GetDeliveryIds(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("duplicate's delivery ids = %v, want the original %v", got, want)
	}
	waitDeliveryState(t, n, first[0].GetDeliveryIds()[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	list, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetDeliveries()) != 1 || len(rcv.Requests()) != 1 {
		t.Errorf("%d deliveries and %d requests, want 1 and 1", len(list.GetDeliveries()), len(rcv.Requests()))
	}
}

func TestPublish_InvalidEventIsRejectedAndNothingStored(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)

	tests := []struct {
		name  string
		edit  func(e *cloudeventsv1.CloudEvent)
		field string
	}{
		{"missing id", func(e *cloudeventsv1.CloudEvent) { e.Id = "" }, "events[1].id"},
		{"missing source", func(e *cloudeventsv1.CloudEvent) { e.Source = "" }, "events[1].source"},
		{"missing type", func(e *cloudeventsv1.CloudEvent) { e.Type = "" }, "events[1].type"},
		{"missing specversion", func(e *cloudeventsv1.CloudEvent) { e.SpecVersion = "" }, "events[1].spec_version"},
		{"wrong specversion", func(e *cloudeventsv1.CloudEvent) { e.SpecVersion = "0.3" }, "events[1].spec_version"},
		{"uppercase extension", func(e *cloudeventsv1.CloudEvent) { e.Attributes["Tenant"] = str("x") }, "events[1].attributes[Tenant]"},
		{"extension named data", func(e *cloudeventsv1.CloudEvent) { e.Attributes["data"] = str("x") }, "events[1].attributes[data]"},
		{"oversized", func(e *cloudeventsv1.CloudEvent) {
			e.Data = &cloudeventsv1.CloudEvent_BinaryData{BinaryData: make([]byte, policy.MaxEventSize+1)}
		}, "events[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := newEvent("evt-bad-" + tt.name)
			tt.edit(bad)
			// A valid event first: it must not be stored either.
			_, err := n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("evt-ok-" + tt.name), bad}})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code = %v (%v), want InvalidArgument", st.Code(), err)
			}
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
					}
				}
			}
			if len(fields) != 1 || fields[0] != tt.field {
				t.Errorf("field violations = %v, want [%s]", fields, tt.field)
			}
			if !strings.Contains(st.Message(), tt.field) {
				t.Errorf("message %q does not name %s", st.Message(), tt.field)
			}
		})
	}
	list, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetDeliveries()) != 0 {
		t.Errorf("%d deliveries stored after rejected publishes, want 0", len(list.GetDeliveries()))
	}
	// The valid events of the rejected calls were not stored: publishing
	// one now is new, not a duplicate.
	res := publish(t, n, newEvent("evt-ok-missing id"))
	if res[0].GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_ACCEPTED {
		t.Errorf("status = %v, want ACCEPTED", res[0].GetStatus())
	}
}

func TestSubscription_InvalidIsRejected(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	tests := []struct {
		name  string
		sub   *heraldv1.Subscription
		field string
	}{
		{"no sink", &heraldv1.Subscription{Protocol: "HTTP"}, "subscription.sink"},
		{"relative sink", &heraldv1.Subscription{Sink: "/hook", Protocol: "HTTP"}, "subscription.sink"},
		{"no protocol", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/"}, "subscription.protocol"},
		{"lowercase protocol", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "http"}, "subscription.protocol"},
		{"reserved header", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			ProtocolSettings: &heraldv1.HttpSettings{Headers: map[string]string{"Webhook-Id": "x"}}}, "subscription.protocol_settings.headers"},
		{"empty all filter", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			Filters: []*heraldv1.Filter{{Dialect: &heraldv1.Filter_All{All: &heraldv1.FilterList{}}}}}, "subscription.filters"},
		{"bad sql filter", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			Filters: []*heraldv1.Filter{{Dialect: &heraldv1.Filter_Sql{Sql: "type = "}}}}, "subscription.filters"},
		// Built to be expensive: refused before any event meets them.
		{"sql growing strings exponentially", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			Filters: []*heraldv1.Filter{{Dialect: &heraldv1.Filter_Sql{Sql: hostileConcat}}}}, "subscription.filters"},
		{"a 4 MB sql filter", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			Filters: []*heraldv1.Filter{{Dialect: &heraldv1.Filter_Sql{Sql: strings.Repeat("NOT ", 1<<20) + "TRUE"}}}}, "subscription.filters"},
		{"NaN backoff", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			RetryPolicy: &heraldv1.RetryPolicy{BackoffCoefficient: math.NaN()}}, "retry_policy.backoff_coefficient"},
		{"infinite backoff", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			RetryPolicy: &heraldv1.RetryPolicy{BackoffCoefficient: math.Inf(1)}}, "retry_policy.backoff_coefficient"},
		{"a retry storm", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			RetryPolicy: &heraldv1.RetryPolicy{InitialInterval: durationpb.New(time.Millisecond)}}, "retry_policy.initial_interval"},
		{"a million attempts", &heraldv1.Subscription{Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
			RetryPolicy: &heraldv1.RetryPolicy{MaximumAttempts: 1_000_000}}, "retry_policy.maximum_attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.subs.CreateSubscription(ctx(t), &heraldv1.CreateSubscriptionRequest{Subscription: tt.sub})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.field) {
				t.Errorf("got %v, want InvalidArgument naming %s", err, tt.field)
			}
		})
	}
	list, err := n.subs.ListSubscriptions(ctx(t), &heraldv1.ListSubscriptionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetSubscriptions()) != 0 {
		t.Errorf("%d subscriptions stored, want 0", len(list.GetSubscriptions()))
	}
}

// hostileConcat nests CONCAT_WS so that a 100-byte subject would grow to
// gigabytes: the filter that once killed every node on its first match.
var hostileConcat = func() string {
	s := "subject"
	for range 8 {
		s = "CONCAT_WS(" + s + "," + s + ")"
	}
	return "LENGTH(" + s + ") > 0"
}()

// TestRedriveDeadLetters_AHugeRateIsRefusedNotAPanic: the rate that once
// panicked the node in time.NewTicker(0) is INVALID_ARGUMENT, and the node
// answers the next call.
func TestRedriveDeadLetters_AHugeRateIsRefusedNotAPanic(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	sub := createSub(t, n, "http://127.0.0.1:1/hook")
	_, err := n.deliveries.RedriveDeadLetters(ctx(t), &heraldv1.RedriveDeadLettersRequest{
		SubscriptionId: sub.GetId(), RatePerSecond: 2_000_000_000})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "rate_per_second") {
		t.Fatalf("RedriveDeadLetters = %v, want INVALID_ARGUMENT naming rate_per_second", err)
	}
	if _, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub.GetId()}); err != nil {
		t.Fatalf("the node does not answer after the call: %v", err)
	}
}

func TestSubscription_SecretOnlyInCreateResponse(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	sub := createSub(t, n, "http://127.0.0.1:1/hook")
	got, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSigningSecret() != "" || got.GetSigningSecretHint() == "" ||
		!strings.HasPrefix(sub.GetSigningSecret(), strings.TrimSuffix(got.GetSigningSecretHint(), "...")) {
		t.Errorf("get: secret %q hint %q; want no secret and a hint of %q", got.GetSigningSecret(), got.GetSigningSecretHint(), sub.GetSigningSecret())
	}
	if _, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: "sub_missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("get missing: %v, want NotFound", err)
	}
}

func TestPublisherClient_PublishesSDKEvents(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	c := publisher.New(n.conn)

	e := cloudevents.NewEvent()
	e.SetID("sdk-1")
	e.SetSource("/orders")
	e.SetType("com.example.order.created")
	e.SetSubject("Euro € 😀")
	if err := e.SetData(cloudevents.ApplicationJSON, map[string]int{"order": 1}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Publish(ctx(t), e)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Duplicate || len(res[0].DeliveryIDs) != 1 {
		t.Fatalf("results = %+v", res)
	}
	waitDeliveryState(t, n, res[0].DeliveryIDs[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if got := rcv.Requests()[0].Body; string(got) != `{"order":1}` {
		t.Errorf("body = %s", got)
	}

	bad := cloudevents.NewEvent()
	bad.SetID("sdk-2")
	bad.SetSource("/orders") // no type
	_, err = c.Publish(ctx(t), bad)
	if v := publisher.FieldViolations(err); v["events[0].type"] == "" {
		t.Errorf("violations = %v (err %v), want events[0].type", v, err)
	}
}

// TestMetrics_CountersMoveByWhatHappened: publishing 3 events to two
// subscriptions (one sink accepts, one answers 400), and one duplicate,
// moves each counter by exactly that.
func TestMetrics_CountersMoveByWhatHappened(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	good := heraldtest.NewReceiver(t, nil)
	bad := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusBadRequest, nil })
	createSub(t, n, good.URL)
	createSub(t, n, bad.URL)
	before := scrape(t, n)
	res := publish(t, n, newEvent("m1"), newEvent("m2"), newEvent("m3"))
	publish(t, n, newEvent("m1")) // a duplicate
	for _, r := range res {
		for _, id := range r.GetDeliveryIds() {
			d, err := n.deliveries.GetDelivery(ctx(t), &heraldv1.GetDeliveryRequest{Id: id})
			if err != nil {
				t.Fatal(err)
			}
			want := heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED
			if d.GetSubscriptionId() != "" && strings.Contains(sinkOf(t, n, d.GetSubscriptionId()), bad.URL) {
				want = heraldv1.DeliveryState_DELIVERY_STATE_DEAD
			}
			waitDeliveryState(t, n, id, want)
		}
	}
	after := scrape(t, n)
	for _, tt := range []struct {
		metric string
		want   float64
	}{
		{`herald_events_published_total{status="accepted"}`, 3},
		{`herald_events_published_total{status="duplicate"}`, 1},
		{`herald_deliveries_created_total`, 6},
		{`herald_attempts_total{outcome="delivered"}`, 3},
		{`herald_attempts_total{outcome="permanent"}`, 3},
		{`herald_handoffs_total{result="ok"}`, 3},
		{`herald_dead_letters_total`, 3},
	} {
		if got := after[tt.metric] - before[tt.metric]; got != tt.want {
			t.Errorf("%s moved by %g, want %g", tt.metric, got, tt.want)
		}
	}
	if _, ok := after["herald_requests_in_flight"]; !ok {
		t.Error("/metrics lacks herald_requests_in_flight")
	}
}

func sinkOf(t *testing.T, n *testNode, sub string) string {
	t.Helper()
	s, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub})
	if err != nil {
		t.Fatal(err)
	}
	return s.GetSink()
}

// scrape reads the node's /metrics into name{labels} -> value.
func scrape(t *testing.T, n *testNode) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
