package bench

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/metrics"
)

// Bad-sink modes: how a bad sink treats every request.
const (
	BadHang  = "hang"  // reads the request and never answers
	Bad500   = "500"   // answers 500 at once
	BadClose = "close" // closes the connection without an answer
	BadSlow  = "slow"  // answers 204 after badSlowDelay
)

// badSlowDelay is how long a slow bad sink takes to answer: within
// Herald's request timeout, but hundreds of times a healthy sink's time.
const badSlowDelay = 10 * time.Second

// LatencyDist draws a sink's answer time for each request.
type LatencyDist struct {
	// Fixed is the time when Sigma is 0.
	Fixed time.Duration
	// Median and Sigma make a lognormal distribution when Sigma > 0.
	Median time.Duration
	Sigma  float64
}

// ParseLatency reads a sink latency: a duration ("100ms"), or
// "lognormal:median=100ms,p99=800ms".
func ParseLatency(s string) (LatencyDist, error) {
	if s == "" || s == "0" {
		return LatencyDist{}, nil
	}
	if rest, ok := strings.CutPrefix(s, "lognormal:"); ok {
		var median, p99 time.Duration
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			d, err := time.ParseDuration(v)
			if err != nil {
				return LatencyDist{}, fmt.Errorf("sink latency %q: %s: %w", s, k, err)
			}
			switch k {
			case "median":
				median = d
			case "p99":
				p99 = d
			default:
				return LatencyDist{}, fmt.Errorf("sink latency %q: unknown %q (want median and p99)", s, k)
			}
		}
		if median <= 0 || p99 <= median {
			return LatencyDist{}, fmt.Errorf("sink latency %q: want 0 < median < p99", s)
		}
		// p99 = median * exp(2.326 sigma) for a lognormal distribution.
		return LatencyDist{Median: median, Sigma: math.Log(float64(p99)/float64(median)) / 2.326}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return LatencyDist{}, fmt.Errorf("sink latency %q: want a duration, or lognormal:median=D,p99=D", s)
	}
	return LatencyDist{Fixed: d}, nil
}

// draw returns one answer time.
func (l LatencyDist) draw() time.Duration {
	if l.Sigma == 0 {
		return l.Fixed
	}
	return time.Duration(float64(l.Median) * math.Exp(l.Sigma*rand.NormFloat64()))
}

func (l LatencyDist) String() string {
	if l.Sigma == 0 {
		return l.Fixed.String()
	}
	p99 := time.Duration(float64(l.Median) * math.Exp(2.326*l.Sigma))
	return fmt.Sprintf("lognormal median %s p99 %s", l.Median, p99.Round(time.Millisecond))
}

// behaviour is how one sink of a fleet answers, around its Sink.
type behaviour struct {
	next     http.Handler
	latency  LatencyDist
	bad      string       // "" for a healthy sink
	downTil  atomic.Int64 // Unix nanoseconds: drops every request until then (an outage)
	requests atomic.Int64 // POSTs that reached it
	release  chan struct{}
}

func (b *behaviour) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		b.requests.Add(1)
		if time.Now().UnixNano() < b.downTil.Load() {
			closeConn(w)
			return
		}
		switch b.bad {
		case BadHang:
			select {
			case <-r.Context().Done():
			case <-b.release:
			}
			return
		case Bad500:
			w.WriteHeader(http.StatusInternalServerError)
			return
		case BadClose:
			closeConn(w)
			return
		case BadSlow:
			sleep(r, badSlowDelay, b.release)
		default:
			if d := b.latency.draw(); d > 0 {
				sleep(r, d, b.release)
			}
		}
	}
	b.next.ServeHTTP(w, r)
}

func sleep(r *http.Request, d time.Duration, release <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-release:
	}
}

// closeConn drops the connection without an answer, as a crashed or
// unreachable receiver would.
func closeConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// fleetSink is one sink of a fleet: its listener, its verifying Sink and
// how it answers.
type fleetSink struct {
	ln    net.Listener
	sink  *Sink
	bad   bool
	b     *behaviour
	conns atomic.Int64 // open connections
	stop  func()
}

// setDown makes sink fs drop every request until t.
func setDown(fs *fleetSink, t time.Time) { fs.b.downTil.Store(t.UnixNano()) }

// fleet is every sink of a run.
type fleet struct {
	sinks   []*fleetSink
	release chan struct{} // closed to let held requests go at the end
	once    sync.Once
}

// listenFleet opens n listeners on addr's host (the first on addr itself
// when it names a port), so that each sink is an origin of its own.
func listenFleet(addr string, n int) (*fleet, error) {
	f := &fleet{release: make(chan struct{})}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sink-addr %q: %w", addr, err)
	}
	for i := range n {
		a := addr
		if i > 0 {
			a = net.JoinHostPort(host, "0")
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("sink %d: %w", i, err)
		}
		f.sinks = append(f.sinks, &fleetSink{ln: ln})
	}
	return f, nil
}

// URL is sink i's webhook URL.
func (f *fleet) URL(i int) string { return "http://" + f.sinks[i].ln.Addr().String() + "/hook" }

// serve starts sink i with Sink s and the given behaviour.
func (f *fleet) serve(i int, s *Sink, latency LatencyDist, bad string) {
	fs := f.sinks[i]
	fs.sink, fs.bad = s, bad != ""
	h := &behaviour{next: s, latency: latency, bad: bad, release: f.release}
	fs.b = h
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				fs.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				fs.conns.Add(-1)
			}
		}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(fs.ln)
	}()
	fs.stop = func() {
		_ = srv.Close()
		<-done
	}
}

// conns is the open connections to every sink.
func (f *fleet) conns() int {
	n := 0
	for _, s := range f.sinks {
		n += int(s.conns.Load())
	}
	return n
}

// close lets held requests go and stops every sink.
func (f *fleet) close() {
	f.once.Do(func() { close(f.release) })
	for _, s := range f.sinks {
		if s.stop != nil {
			s.stop()
		} else {
			_ = s.ln.Close()
		}
	}
}

// badSink reports whether sink i of n is bad, when a share frac of them
// are: the bad ones are spread evenly.
func badSink(i, n int, frac float64) bool {
	return math.Floor(float64(i+1)*frac) > math.Floor(float64(i)*frac)
}

// sourceOf is the event source of sink i's events.
func sourceOf(base string, i int) string { return base + "/" + strconv.Itoa(i) }

// requests is how many POSTs reached sink fs.
func (fs *fleetSink) requests() int64 {
	if fs.b == nil {
		return 0
	}
	return fs.b.requests.Load()
}

// awaitAll waits until sinks have accepted n distinct events between them.
func awaitAll(ctx context.Context, sinks []*Sink, n int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := 0
		for _, s := range sinks {
			got += s.Delivered()
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// mergedReceipts is every sink's receipts together (event ids are unique
// across sinks).
func mergedReceipts(sinks []*Sink) map[string]Receipt {
	out := map[string]Receipt{}
	for _, s := range sinks {
		maps.Copy(out, s.Receipts())
	}
	return out
}

// sumStats adds up the sinks' counters.
func sumStats(sinks []*Sink) SinkStats {
	var t SinkStats
	for _, s := range sinks {
		st := s.Stats()
		t.Requests += st.Requests
		t.Accepted += st.Accepted
		t.Failed += st.Failed
		t.Retried += st.Retried
		t.BadSignature += st.BadSignature
		t.Malformed += st.Malformed
		t.Handshakes += st.Handshakes
	}
	return t
}

// samplePeaks samples the node's requests in flight and waiting (from this
// process's metrics), the sinks' open connections and this process's
// goroutines every 50 ms until stop is called.
func samplePeaks(f *fleet) (*Peak, func()) {
	p := &Peak{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			st := metrics.SchedulerNow()
			p.InFlight = max(p.InFlight, st.InFlight)
			p.Waiting = max(p.Waiting, st.Queued)
			p.Connections = max(p.Connections, f.conns())
			p.Goroutines = max(p.Goroutines, runtime.NumGoroutine())
			if len(st.Refused) > 0 {
				p.Refused = st.Refused
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return p, func() { once.Do(func() { close(done); <-stopped }) }
}
