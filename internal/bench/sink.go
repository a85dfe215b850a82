package bench

import (
	"context"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/clients/signing"
)

// maxSinkBody bounds the request bodies the sink reads.
const maxSinkBody = 1 << 20

// Receipt is what the sink accepted for one event.
type Receipt struct {
	First   time.Time // when the first accepted request arrived
	Count   int       // accepted requests (more than 1 means duplicates)
	Retried bool      // its first attempt was failed on purpose
}

// SinkStats counts the requests a Sink answered.
type SinkStats struct {
	// Requests is every request, whatever the answer.
	Requests int `json:"requests"`
	// Accepted is the requests answered 204 (duplicates included).
	Accepted int `json:"accepted"`
	// Failed is the first attempts answered 500 on purpose (the fail
	// rate).
	Failed int `json:"failed_on_purpose"`
	// Retried is the requests that came again for a webhook-id the sink
	// had failed on purpose.
	Retried int `json:"retried"`
	// BadSignature is the requests whose signature did not verify
	// (answered 401).
	BadSignature int `json:"bad_signature"`
	// Malformed is the requests without a webhook-id or with an
	// unreadable body (answered 400), or with a method other than POST
	// and OPTIONS (405).
	Malformed int `json:"malformed"`
	// Handshakes is the validation handshakes (OPTIONS) granted.
	Handshakes int `json:"handshakes"`
}

// Sink is a webhook receiver that verifies every request's signature and
// records when each event first arrived. It answers 204 to a verified
// request, except that it answers 500 to a set fraction of first attempts
// (by webhook-id) so that retries can be measured. It keys events by the
// ce-id header (binary mode), or by webhook-id when there is none.
// It is an http.Handler, safe for concurrent use.
type Sink struct {
	verifier *signing.Verifier
	failRate float64
	now      func() time.Time

	mu       sync.Mutex
	receipts map[string]Receipt
	attempts map[string]int // by webhook-id; only kept when failRate > 0
	firsts   int            // first attempts seen, for the fail rate
	stats    SinkStats
	waiters  []waiter
}

type waiter struct {
	n  int
	ch chan struct{}
}

// NewSink returns a Sink that verifies signatures with secret (a "whsec_"
// secret) and answers 500 to the fraction failRate (0 to 1) of first
// attempts. The failed first attempts are spread evenly: of the first n
// webhook-ids, floor(n*failRate) are failed.
func NewSink(secret string, failRate float64) (*Sink, error) {
	v, err := signing.NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	return &Sink{
		verifier: v,
		failRate: min(max(failRate, 0), 1),
		now:      time.Now,
		receipts: make(map[string]Receipt),
		attempts: make(map[string]int),
	}, nil
}

// ServeHTTP verifies and records one request. It grants the CloudEvents
// webhook validation handshake (OPTIONS) to any origin, at any rate.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		s.count(func(st *SinkStats) { st.Handshakes++ })
		w.Header().Set("Allow", "POST, OPTIONS")
		if origin := r.Header.Get("WebHook-Request-Origin"); origin != "" {
			w.Header().Set("WebHook-Allowed-Origin", origin)
			w.Header().Set("WebHook-Allowed-Rate", "*")
		}
		w.WriteHeader(http.StatusOK)
		return
	default:
		s.count(func(st *SinkStats) { st.Malformed++ })
		w.Header().Set("Allow", "POST, OPTIONS")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSinkBody))
	now := s.now()
	msgID := r.Header.Get(signing.HeaderID)
	if err != nil || msgID == "" {
		s.count(func(st *SinkStats) { st.Malformed++ })
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := s.verifier.Verify(r.Header, body, now); err != nil {
		s.count(func(st *SinkStats) { st.BadSignature++ })
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	key := r.Header.Get("Ce-Id")
	if key == "" {
		key = msgID
	}
	if s.record(msgID, key, now) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusInternalServerError)
}

func (s *Sink) count(f func(*SinkStats)) {
	s.mu.Lock()
	s.stats.Requests++
	f(&s.stats)
	s.mu.Unlock()
}

// record books a verified request and reports whether to accept it.
func (s *Sink) record(msgID, key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	retried := false
	if s.failRate > 0 {
		n, seen := s.attempts[msgID]
		s.attempts[msgID] = n + 1
		switch {
		case !seen:
			s.firsts++
			// Fail this first attempt if it raises floor(firsts*rate).
			if math.Floor(float64(s.firsts)*s.failRate) > math.Floor(float64(s.firsts-1)*s.failRate) {
				s.stats.Failed++
				s.attempts[msgID] = -1 // marks "failed on purpose"
				return false
			}
		case n < 0:
			s.stats.Retried++
			s.attempts[msgID] = 1
			retried = true
		}
	}
	s.stats.Accepted++
	rc, ok := s.receipts[key]
	if !ok {
		rc.First = now
		rc.Retried = retried
	}
	rc.Count++
	s.receipts[key] = rc
	if !ok && len(s.waiters) > 0 {
		n := len(s.receipts)
		kept := s.waiters[:0]
		for _, w := range s.waiters {
			if n >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		s.waiters = kept
	}
	return true
}

// Delivered returns how many distinct events the sink has accepted.
func (s *Sink) Delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.receipts)
}

// Await waits until the sink has accepted n distinct events, or ctx is
// done (then it returns ctx's error).
func (s *Sink) Await(ctx context.Context, n int) error {
	s.mu.Lock()
	if len(s.receipts) >= n {
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.waiters = append(s.waiters, waiter{n: n, ch: ch})
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		s.waiters = slices.DeleteFunc(s.waiters, func(w waiter) bool { return w.ch == ch })
		s.mu.Unlock()
		return ctx.Err()
	}
}

// Receipts returns a copy of the receipts by event id.
func (s *Sink) Receipts() map[string]Receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.receipts)
}

// Stats returns the sink's counters.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
