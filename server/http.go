package server

import (
	"context"
	"net/http"
	"time"

	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
)

// HTTPHandler returns Herald's HTTP edge: /healthz (the process is up),
// /readyz (ready reports nil when the node can take traffic, and a note
// on what works degraded), /metrics
// (Prometheus; for the admin scope unless svc's options make it open),
// the validation callback URL of svc's handshakes (which carries its own
// secret) and, when ingest is not nil, the CloudEvents receiver at
// IngestPath.
func HTTPHandler(ready func(context.Context) (note string, err error), svc *Services, ingest *Ingest) http.Handler {
	mux := http.NewServeMux()
	if ingest != nil {
		mux.Handle(IngestPath, ingest)
	}
	mux.Handle(validationPath+"/{subscription}/{token}", svc.ValidationCallback())
	var m http.Handler = metrics.Handler()
	if !svc.opts.MetricsOpen && svc.opts.Auth != nil {
		m = requireScope(svc.opts.Auth, policy.ScopeMetrics, m)
	}
	mux.Handle("GET /metrics", m)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		note, err := ready(ctx)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
		if note != "" {
			_, _ = w.Write([]byte(note + "\n"))
		}
	})
	return recoverHTTP(svc.opts.Logger, mux)
}
