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
	verifiedNote := ""
	if *secret != "" {
		verifiedNote = " (signature verified)"
	}
	h, err := receiver.NewHandler(func(ctx context.Context, e event.Event) error {
		fmt.Printf("%s webhook-id=%s%s\n%s\n", time.Now().Format(time.TimeOnly), receiver.WebhookID(ctx), verifiedNote, e)
		return nil
	}, opts...)
	if err != nil {
		return err
	}
	h = narrate(h)
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

// narrate prints what the receiver answered that its event callback does
// not see: validation handshakes (granted or not) and refused requests
// (a signature that did not verify, a malformed event).
func narrate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		now := time.Now().Format(time.TimeOnly)
		switch {
		case r.Method == http.MethodOptions:
			granted := rec.Header().Get("WebHook-Allowed-Origin")
			if granted == "" {
				fmt.Printf("%s validation handshake from %q: refused (%d)\n", now, r.Header.Get("WebHook-Request-Origin"), rec.status)
			} else {
				fmt.Printf("%s validation handshake from %q: granted (rate %s)\n", now, r.Header.Get("WebHook-Request-Origin"), orStar(rec.Header().Get("WebHook-Allowed-Rate")))
			}
		case rec.status == http.StatusUnauthorized:
			fmt.Printf("%s webhook-id=%s: the signature did not verify (401)\n", now, r.Header.Get("webhook-id"))
		case rec.status >= 400:
			fmt.Printf("%s webhook-id=%s: refused with %d\n", now, r.Header.Get("webhook-id"), rec.status)
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
