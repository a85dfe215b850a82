package delivery_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/policy"
)

// TestSend_TheGuardRefusesPrivateAddressesAtDialTime: with the egress
// guard on, a sink at a loopback address is never connected to, whatever
// its URL looked like; the attempt is a permanent failure saying why.
func TestSend_TheGuardRefusesPrivateAddressesAtDialTime(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	port := strings.TrimPrefix(rcv.URL[strings.LastIndex(rcv.URL, ":"):], ":")
	port = strings.TrimSuffix(port, "/hook")
	s := delivery.NewSender(delivery.WithGuard(&egress.Guard{}))
	signer, err := signing.NewSigner(signing.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{rcv.URL, "http://localhost:" + port + "/hook", "http://[::ffff:127.0.0.1]:" + port + "/hook"} {
		e := event.New()
		e.SetID("1")
		e.SetSource("/s")
		e.SetType("t")
		e.DataEncoded = []byte(`{}`)
		res := s.Send(context.Background(), &delivery.Request{WebhookID: "msg_1", Event: &e, Sink: sink, Signer: signer})
		if !errors.Is(res.Err, egress.ErrForbidden) || res.Outcome(policy.Retry{}) != policy.Permanent {
			t.Errorf("%s: %+v, want a permanent failure from the guard", sink, res)
		}
		if res.Err != nil && !strings.Contains(res.Err.Error(), "loopback") {
			t.Errorf("%s: error %q does not say why", sink, res.Err)
		}
	}
	if n := len(rcv.Requests()); n != 0 {
		t.Errorf("the loopback sink got %d requests", n)
	}
	// Allowed by the list, the same sink is reached.
	allow := delivery.NewSender(delivery.WithGuard(&egress.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
	e := event.New()
	e.SetID("2")
	e.SetSource("/s")
	e.SetType("t")
	e.DataEncoded = []byte(`{}`)
	if res := allow.Send(context.Background(), &delivery.Request{WebhookID: "msg_2", Event: &e, Sink: rcv.URL, Signer: signer}); res.StatusCode != 204 {
		t.Errorf("allow-listed sink: %+v", res)
	}
}
