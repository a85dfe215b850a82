package delivery_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/receiver"
	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/policy"
)

// TestSend_TheReceiverKitAcceptsIt: what Herald's sender sends, in every
// content mode and with both signature versions, the Go receiver kit
// (clients/receiver) verifies and decodes.
func TestSend_TheReceiverKitAcceptsIt(t *testing.T) {
	secret := signing.NewSecret()
	signingKey, publicKey := signing.NewSigningKey()
	for _, tt := range []struct {
		name     string
		receiver string
		signer   string
		mode     policy.ContentMode
	}{
		{"v1 binary", secret, secret, policy.ContentBinary},
		{"v1 structured", secret, secret, policy.ContentStructured},
		{"v1 batched", secret, secret, policy.ContentBatched},
		{"v1a binary", publicKey, signingKey, policy.ContentBinary},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan event.Event, 2)
			h, err := receiver.NewHandler(func(_ context.Context, e event.Event) error {
				got <- e
				return nil
			}, receiver.WithSecrets(tt.receiver))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			signer, err := signing.NewSigner(tt.signer)
			if err != nil {
				t.Fatal(err)
			}
			e := event.New()
			e.SetID("evt-1")
			e.SetSource("/orders")
			e.SetType("com.example.order.created")
			e.SetSubject("Euro € 😀")
			e.SetDataContentType("application/json")
			e.DataEncoded = []byte(`{"order":42}`)
			req := &delivery.Request{WebhookID: "msg_1", Sink: srv.URL, Signer: signer, Mode: tt.mode}
			if tt.mode == policy.ContentBatched {
				req.Batch = []*event.Event{&e, &e}
			} else {
				req.Event = &e
			}
			res := delivery.NewSender().Send(context.Background(), req)
			if res.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d (%v): %s", res.StatusCode, res.Err, res.Body)
			}
			if d := <-got; d.Subject() != "Euro € 😀" || string(d.Data()) != `{"order":42}` {
				t.Errorf("decoded %s", d)
			}
		})
	}
}
