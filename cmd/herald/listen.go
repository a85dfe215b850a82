package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/receiver"
)

// listen runs a webhook receiver that prints every event it gets: the
// other end of the README's tour.
func listen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("herald listen", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "listen address")
	secret := fs.String("secret", "", "the subscription's signing secret (whsec_...); empty accepts unsigned requests")
	status := fs.Int("status", http.StatusNoContent, "answer every delivery with this status: 500 makes Herald retry")
	origin := fs.String("allow-origin", "*", "grant the webhook validation handshake to this sender (DNS name, or * for any; empty refuses)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := []receiver.Option{receiver.WithoutVerification()}
	if *secret != "" {
		opts = []receiver.Option{receiver.WithSecrets(*secret)}
	}
	if *origin != "" {
		opts = append(opts, receiver.WithAllowedOrigins(*origin))
	}
	h, err := receiver.NewHandler(func(ctx context.Context, e event.Event) error {
		fmt.Printf("%s webhook-id=%s\n%s\n", time.Now().Format(time.TimeOnly), receiver.WebhookID(ctx), e)
		return nil
	}, opts...)
	if err != nil {
		return err
	}
	if *status != http.StatusNoContent {
		code, next := *status, h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodOptions {
				next.ServeHTTP(w, r) // still answer the handshake
				return
			}
			fmt.Printf("%s answering %d to webhook-id=%s\n", time.Now().Format(time.TimeOnly), code, r.Header.Get("webhook-id"))
			w.WriteHeader(code)
		})
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	verified := "unverified"
	if *secret != "" {
		verified = "verifying signatures"
	}
	fmt.Fprintf(os.Stderr, "listening on http://%s/ (%s, answering %d)\n", *addr, verified, *status)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
