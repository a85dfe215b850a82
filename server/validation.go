package server

import (
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/heraldhq/herald/internal/handshake"
	"github.com/heraldhq/herald/workflows"
)

// validationPath is where sinks grant consent asynchronously: the
// WebHook-Request-Callback URL is validationPath/<subscription>/<token>.
const validationPath = "/v1/validation"

// ValidationCallback serves the validation callback URL. A sink (or a
// person, from a browser) grants consent with GET or POST, optionally with
// WebHook-Allowed-Rate. The token is single-use and expires with the
// handshake; an unknown, used or expired token is 404 and reveals nothing.
func (s *Services) ValidationCallback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		subID, token := r.PathValue("subscription"), r.PathValue("token")
		sub, err := s.store.SubscriptionGet(r.Context(), subID)
		if err != nil || sub.Validation == nil || time.Now().After(sub.Validation.ExpiresAt) ||
			subtle.ConstantTimeCompare([]byte(handshake.CallbackTokenHash(token)), []byte(sub.Validation.TokenHash)) != 1 {
			http.NotFound(w, r)
			return
		}
		rate, err := handshake.ParseGrant(r, sub.Validation.RequestedRate)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.workflows.Grant(r.Context(), sub.ID, workflows.GrantInput{Rate: rate}); err != nil {
			// The handshake ended (timed out or replaced): the token is spent.
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Thank you: deliveries to this endpoint are now allowed.\n"))
	})
}
