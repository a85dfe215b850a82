package e2e

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttpsdk "github.com/cloudevents/sdk-go/v2/protocol/http"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/signing"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// handshakeSink answers the validation handshake as grant says, and
// records every request.
type handshakeSink struct {
	*heraldtest.Receiver
	mu       sync.Mutex
	options  []http.Header
	grant    func(h http.Header) (int, http.Header) // the answer to an OPTIONS
	callback chan string
}

func newHandshakeSink(t *testing.T, grant func(h http.Header) (int, http.Header)) *handshakeSink {
	s := &handshakeSink{grant: grant, callback: make(chan string, 1)}
	s.Receiver = heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		if r.Method != http.MethodOptions {
			return http.StatusNoContent, nil
		}
		s.mu.Lock()
		s.options = append(s.options, r.Header.Clone())
		s.mu.Unlock()
		if cb := r.Header.Get("WebHook-Request-Callback"); cb != "" {
			select {
			case s.callback <- cb:
			default:
			}
		}
		return s.grant(r.Header)
	})
	return s
}

// posts returns the delivery requests, without the handshake's OPTIONS.
func (s *handshakeSink) posts() []heraldtest.Request {
	var out []heraldtest.Request
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

func waitSubscriptionState(t *testing.T, n *testNode, id string, want heraldv1.SubscriptionState) *heraldv1.Subscription {
	t.Helper()
	var s *heraldv1.Subscription
	heraldtest.Eventually(t, wait, "subscription "+id+" to be "+want.String(), func() bool {
		var err error
		s, err = n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: id})
		return err == nil && s.GetState() == want
	})
	return s
}

func withHandshake(s *heraldv1.Subscription) { s.SkipValidation = false }

func TestHandshake_GrantActivatesAndDeliveriesCarryTheOrigin(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	sink := newHandshakeSink(t, func(h http.Header) (int, http.Header) {
		return http.StatusOK, http.Header{"Webhook-Allowed-Origin": {h.Get("WebHook-Request-Origin")}, "Webhook-Allowed-Rate": {"600"}, "Allow": {"POST"}}
	})
	sub := createSub(t, n, sink.URL, withHandshake, func(s *heraldv1.Subscription) { s.RateLimit = 1200 })
	if sub.GetState() != heraldv1.SubscriptionState_SUBSCRIPTION_STATE_PENDING_VALIDATION {
		t.Fatalf("new subscription state = %v, want PENDING_VALIDATION", sub.GetState())
	}
	got := waitSubscriptionState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
	if got.GetAllowedRate() != 600 {
		t.Errorf("allowed rate = %d, want the granted 600", got.GetAllowedRate())
	}
	sink.mu.Lock()
	opt := sink.options[0]
	sink.mu.Unlock()
	if opt.Get("WebHook-Request-Origin") != n.cfg.Origin || opt.Get("WebHook-Request-Rate") != "1200" || opt.Get("WebHook-Request-Callback") == "" {
		t.Errorf("OPTIONS headers = %v", opt)
	}
	id := publish(t, n, newEvent("evt-hs"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	posts := sink.posts()
	if len(posts) != 1 || posts[0].Header.Get("WebHook-Request-Origin") != n.cfg.Origin {
		t.Errorf("deliveries = %d, origin %q; want 1 with origin %q", len(posts), posts[0].Header.Get("WebHook-Request-Origin"), n.cfg.Origin)
	}
}

func TestHandshake_NoConsentHoldsDeliveriesUntilValidated(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	var mu sync.Mutex
	consent := false
	sink := newHandshakeSink(t, func(h http.Header) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if !consent {
			return http.StatusMethodNotAllowed, nil // does not do the handshake
		}
		return http.StatusOK, http.Header{"Webhook-Allowed-Origin": {"*"}}
	})
	sub := createSub(t, n, sink.URL, withHandshake)
	heraldtest.Eventually(t, wait, "the refusal to be recorded", func() bool {
		s, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub.GetId()})
		return err == nil && strings.Contains(s.GetStateReason(), "refused")
	})
	id := publish(t, n, newEvent("evt-held"))[0].GetDeliveryIds()[0]

	mu.Lock()
	consent = true
	mu.Unlock()
	if _, err := n.subs.ValidateSubscription(ctx(t), &heraldv1.ValidateSubscriptionRequest{Id: sub.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitSubscriptionState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if got := len(sink.posts()); got != 1 {
		t.Errorf("%d deliveries, want 1 (none before consent)", got)
	}
}

func TestHandshake_CallbackGrantIsSingleUse(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	// 200 without WebHook-Allowed-Origin is no grant: Herald waits for the
	// callback.
	sink := newHandshakeSink(t, func(http.Header) (int, http.Header) { return http.StatusOK, nil })
	sub := createSub(t, n, sink.URL, withHandshake)
	var callback string
	select {
	case callback = <-sink.callback:
	case <-time.After(wait):
		t.Fatal("no OPTIONS with a callback URL")
	}
	// A person opens the link in a browser: GET, no rate header.
	resp, err := http.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback GET = %d, want 200", resp.StatusCode)
	}
	waitSubscriptionState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
	resp, err = http.Post(callback, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("second callback = %d, want 404", resp.StatusCode)
	}
	bad := callback[:strings.LastIndex(callback, "/")+1] + "forged"
	if resp, err := http.Get(bad); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("forged token = %d, want 404", resp.StatusCode)
		}
	}
}

// TestContentModes_SDKReceiverGetsEveryMode delivers to a receiver built
// with sdk-go's HTTP protocol in binary, structured and batched mode.
func TestContentModes_SDKReceiverGetsEveryMode(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	var mu sync.Mutex
	got := map[string][]cloudevents.Event{} // path -> events
	handler := func(path string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var evs []cloudevents.Event
			var err error
			if path == "/batched" {
				evs, err = cehttpsdk.NewEventsFromHTTPRequest(r)
			} else {
				var e *cloudevents.Event
				if e, err = cehttpsdk.NewEventFromHTTPRequest(r); err == nil {
					evs = append(evs, *e)
				}
			}
			if err != nil {
				t.Logf("%s: sdk-go rejects the request: %v", path, err)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			got[path] = append(got[path], evs...)
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		})
	}
	mux := http.NewServeMux()
	for _, p := range []string{"/binary", "/structured", "/batched"} {
		mux.Handle(p, handler(p))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()

	createSub(t, n, base+"/binary")
	createSub(t, n, base+"/structured", func(s *heraldv1.Subscription) { s.ContentMode = heraldv1.ContentMode_CONTENT_MODE_STRUCTURED })
	createSub(t, n, base+"/batched", func(s *heraldv1.Subscription) {
		s.ContentMode = heraldv1.ContentMode_CONTENT_MODE_BATCHED
		s.MaxBatchSize = 10
	})
	res := publish(t, n, newEvent("evt-m1"), newEvent("evt-m2"), newEvent("evt-m3"))
	for _, r := range res {
		for _, id := range r.GetDeliveryIds() {
			waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range []string{"/binary", "/structured", "/batched"} {
		evs := got[p]
		if len(evs) != 3 {
			t.Errorf("%s got %d events, want 3", p, len(evs))
			continue
		}
		for _, e := range evs {
			subject, tenant := e.Subject(), e.Extensions()["tenant"].(string)
			if p == "/binary" {
				// sdk-go v2.16.2 does not percent-decode ce- headers (its
				// issue 1331): a receiver using it must decode them itself.
				subject, _ = cehttp.DecodeHeaderValue(subject)
				tenant, _ = cehttp.DecodeHeaderValue(tenant)
			}
			if subject != "Euro € 😀" || tenant != "acme corp" || string(e.Data()) != `{"order":42}` {
				t.Errorf("%s decoded %v", p, e)
			}
		}
	}
}

func TestRateLimit_SpacesRequestsToTheSink(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) { s.RateLimit = 240 }) // 4/s
	res := publish(t, n, newEvent("r1"), newEvent("r2"), newEvent("r3"), newEvent("r4"), newEvent("r5"), newEvent("r6"))
	for _, r := range res {
		waitDeliveryState(t, n, r.GetDeliveryIds()[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
	reqs := rcv.Requests()
	if len(reqs) != 6 {
		t.Fatalf("%d requests, want 6", len(reqs))
	}
	// 6 requests at 4/s, after a burst of two, span at least 4 intervals
	// of 250ms (minus a little for when each was recorded).
	if span := reqs[5].At.Sub(reqs[0].At); span < 900*time.Millisecond {
		t.Errorf("6 requests within %s: the 240/min limit was not kept", span)
	}
}

func TestSigning_RotationSignsWithBothSecretsAndBearerToken(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.SinkCredential = &heraldv1.SinkCredential{BearerToken: "tok-123"}
	})
	rot, err := n.subs.RotateSecret(ctx(t), &heraldv1.RotateSecretRequest{Id: sub.GetId(), Overlap: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := publish(t, n, newEvent("evt-rot"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	r := rcv.Requests()[0]
	if sigs := strings.Fields(r.Header.Get("webhook-signature")); len(sigs) != 2 {
		t.Errorf("signatures = %v, want 2 during the overlap", sigs)
	}
	for _, secret := range []string{sub.GetSigningSecret(), rot.GetSigningSecret()} {
		v, err := signing.NewVerifier(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(r.Header, r.Body, time.Now()); err != nil {
			t.Errorf("secret %s...: %v", secret[:10], err)
		}
	}
	if a := r.Header.Get("Authorization"); a != "Bearer tok-123" {
		t.Errorf("Authorization = %q", a)
	}
	got, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetHasSinkCredential() || got.GetSinkCredential() != nil {
		t.Errorf("get: has_sink_credential %v, credential %v; want true and never returned", got.GetHasSinkCredential(), got.GetSinkCredential())
	}
}

func TestSigning_Ed25519(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.SigningAlgorithm = heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_ED25519
	})
	if !strings.HasPrefix(sub.GetSigningPublicKey(), "whpk_") || sub.GetSigningSecret() != "" {
		t.Fatalf("create returned public key %q secret %q", sub.GetSigningPublicKey(), sub.GetSigningSecret())
	}
	id := publish(t, n, newEvent("evt-ed"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	r := rcv.Requests()[0]
	v, err := signing.NewVerifier(sub.GetSigningPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(r.Header, r.Body, time.Now()); err != nil || !strings.HasPrefix(r.Header.Get("webhook-signature"), "v1a,") {
		t.Errorf("v1a signature %q: %v", r.Header.Get("webhook-signature"), err)
	}
}

func TestIngest_HTTPBinaryEventIsDelivered(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.HTTPAddr()+"/v1/events", bytes.NewReader([]byte(`{"order":7}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", "evt-http")
	req.Header.Set("ce-source", "/orders")
	req.Header.Set("ce-type", "com.example.order.created")
	req.Header.Set("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest = %d %s", resp.StatusCode, body)
	}
	got := rcv.WaitFor(t, 1, wait)
	if s := got[0].Header.Get("ce-subject"); s != "Euro%20%E2%82%AC%20%F0%9F%98%80" {
		t.Errorf("ce-subject = %q", s)
	}
}

func TestSubscription_UpdateReenablesADisabledSubscription(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	sub := createSub(t, n, "http://127.0.0.1:1/hook")
	upd := func(state heraldv1.SubscriptionState) *heraldv1.Subscription {
		t.Helper()
		out, err := n.subs.UpdateSubscription(ctx(t), &heraldv1.UpdateSubscriptionRequest{
			Subscription: &heraldv1.Subscription{Id: sub.GetId(), State: state},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"state"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := upd(heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED); got.GetState() != heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED {
		t.Errorf("state = %v", got.GetState())
	}
	if got := upd(heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE); got.GetState() != heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE || got.GetSink() != sub.GetSink() {
		t.Errorf("state = %v sink %q: the mask must leave other fields alone", got.GetState(), got.GetSink())
	}
}

// TestSigning_DefaultBearerTokenIsGeneratedAndSent: the CloudEvents
// webhook spec requires an access token on every delivery, so a
// subscription created without one gets a generated token, shown once;
// omit_bearer_token sends none.
func TestSigning_DefaultBearerTokenIsGeneratedAndSent(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	withToken := heraldtest.NewReceiver(t, nil)
	without := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, withToken.URL)
	tok := sub.GetGeneratedBearerToken()
	if !strings.HasPrefix(tok, "hbt_") || !sub.GetHasSinkCredential() {
		t.Fatalf("create returned generated_bearer_token %q, has_sink_credential %v", tok, sub.GetHasSinkCredential())
	}
	got, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetGeneratedBearerToken() != "" {
		t.Error("GetSubscription shows the generated token")
	}
	createSub(t, n, without.URL, func(s *heraldv1.Subscription) {
		s.SinkCredential = &heraldv1.SinkCredential{OmitBearerToken: true}
	})
	publish(t, n, newEvent("evt-token"))
	if a := withToken.WaitFor(t, 1, wait)[0].Header.Get("Authorization"); a != "Bearer "+tok {
		t.Errorf("Authorization = %q, want the generated token", a)
	}
	if a, ok := without.WaitFor(t, 1, wait)[0].Header["Authorization"]; ok {
		t.Errorf("omit_bearer_token still sent Authorization %q", a)
	}
}
