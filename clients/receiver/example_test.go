package receiver_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/heraldhq/herald/clients/publisher"
	"github.com/heraldhq/herald/clients/receiver"
)

func ExampleNewHandler() {
	// The subscription's signing secret, as Herald showed it when the
	// subscription was created.
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	h, err := receiver.NewHandler(func(ctx context.Context, e event.Event) error {
		fmt.Printf("%s %s %q %s\n", receiver.WebhookID(ctx), e.Type(), e.Subject(), e.Data())
		return nil // 204: delivered. Return an error to have Herald retry.
	}, receiver.WithSecrets(secret))
	if err != nil {
		log.Fatal(err)
	}
	// In a service: http.Handle("/webhooks/orders", h)
	srv := httptest.NewServer(h)
	defer srv.Close()

	// What Herald sends: a binary-mode CloudEvent, signed per Standard
	// Webhooks (here signed with the reference library).
	body := `{"order":42}`
	now := time.Now()
	wh, _ := standardwebhooks.NewWebhook(secret)
	sig, _ := wh.Sign("msg_01example", now, []byte(body))
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", "evt-1")
	req.Header.Set("ce-source", "https://orders.example.com")
	req.Header.Set("ce-type", "com.example.order.created")
	req.Header.Set("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80")
	req.Header.Set("webhook-id", "msg_01example")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// msg_01example com.example.order.created "Euro € 😀" {"order":42}
	// 204
}

func ExampleReconciler() {
	conn, err := grpc.NewClient("herald.internal:50051",
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(publisher.APIKey(os.Getenv("HERALD_API_KEY"))))
	if err != nil {
		log.Fatal(err)
	}
	seen := map[string]bool{} // your store of what the webhook handler took
	r := receiver.NewReconciler(conn, "sub_...", &receiver.MemoryCursor{}, func(ctx context.Context, e event.Event) error {
		seen[e.Source()+" "+e.ID()] = true
		fmt.Println("caught up on", e.ID())
		return nil
	})
	r.Seen = func(_ context.Context, source, id string) (bool, error) { return seen[source+" "+id], nil }
	// Every minute, hand over whatever the endpoint missed.
	_ = r.Run(context.Background(), time.Minute, func(err error) { log.Print(err) })
}
