// Package heraldtest holds what Herald's tests share: a loopback webhook
// receiver that records requests and answers as told. (Checks of
// CloudEvents requests are clients/cehttp/cehttptest.)
package heraldtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Request is one request a Receiver got.
type Request struct {
	Method string
	Header http.Header
	Body   []byte
	At     time.Time
}

// Respond decides the answer to the n-th request (0-based). It may block,
// e.g. to hold a request in flight.
type Respond func(n int, r *http.Request) (status int, header http.Header)

// Receiver is a real HTTP server on loopback that records every request.
type Receiver struct {
	URL string

	srv     *httptest.Server
	respond Respond
	mu      sync.Mutex
	reqs    []Request
	changed chan struct{} // closed and replaced on every request
}

// NewReceiver starts a receiver; respond nil answers 204 to everything.
// It is closed when the test ends.
func NewReceiver(t testing.TB, respond Respond) *Receiver {
	t.Helper()
	r := &Receiver{respond: respond, changed: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL + "/hook"
	t.Cleanup(r.srv.Close)
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	// Record on arrival, so a request held in flight by respond is seen.
	r.mu.Lock()
	n := len(r.reqs)
	r.reqs = append(r.reqs, Request{Method: req.Method, Header: req.Header.Clone(), Body: body, At: time.Now()})
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	status, header := http.StatusNoContent, http.Header(nil)
	if r.respond != nil {
		status, header = r.respond(n, req)
	}
	for k, vs := range header {
		w.Header()[k] = vs
	}
	w.WriteHeader(status)
}

// Requests returns the requests received so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// WaitFor waits until n requests have been received, failing the test
// after timeout.
func (r *Receiver) WaitFor(t testing.TB, n int, timeout time.Duration) []Request {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, changed := len(r.reqs), r.changed
		r.mu.Unlock()
		if got >= n {
			return r.Requests()
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("receiver got %d requests in %s, want %d", got, timeout, n)
		}
	}
}

// Eventually polls cond until it is true, failing the test after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
