package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/clients/signing"
)

func ms2(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile_NearestRank(t *testing.T) {
	ten := []time.Duration{ms2(1), ms2(2), ms2(3), ms2(4), ms2(5), ms2(6), ms2(7), ms2(8), ms2(9), ms2(10)}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms2(i + 1)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty is zero", nil, 50, 0},
		{"one value is every percentile", []time.Duration{ms2(7)}, 99, ms2(7)},
		{"p50 of ten is the fifth", ten, 50, ms2(5)},
		{"p95 of ten rounds up to the tenth", ten, 95, ms2(10)},
		{"p99 of a hundred is the 99th", hundred, 99, ms2(99)},
		{"p100 is the maximum", hundred, 100, ms2(100)},
		{"tiny p is the minimum", hundred, 0.001, ms2(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p%g) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize_SortsAndSummarises(t *testing.T) {
	got := Summarize([]time.Duration{ms2(4), ms2(1), ms2(3), ms2(2)})
	want := Latency{Count: 4, Mean: 2500 * time.Microsecond, P50: ms2(2), P95: ms2(4), P99: ms2(4), Max: ms2(4)}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if z := Summarize(nil); z != (Latency{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", z)
	}
}

func TestAccount_CountsLostDuplicatesAndUnexpected(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sent := []Sent{
		{ID: "a", At: t0, Accepted: true},
		{ID: "b", At: t0, Accepted: true},
		{ID: "c", At: t0.Add(ms2(10)), Accepted: true},
		{ID: "lost", At: t0, Accepted: true},
		{ID: "rejected", At: t0, Accepted: false},
		{ID: "rejected-unseen", At: t0, Accepted: false},
	}
	receipts := map[string]Receipt{
		"a":        {First: t0.Add(ms2(5)), Count: 1},
		"b":        {First: t0.Add(ms2(20)), Count: 3, Retried: true},
		"c":        {First: t0.Add(ms2(40)), Count: 1},
		"rejected": {First: t0.Add(ms2(1)), Count: 1},
		"warmup":   {First: t0, Count: 2}, // not sent in this run: ignored
	}
	d := Account(sent, receipts)
	if d.Expected != 4 || d.Delivered != 3 || d.Lost != 1 || d.Duplicates != 2 || d.Unexpected != 1 {
		t.Errorf("expected/delivered/lost/duplicates/unexpected = %d/%d/%d/%d/%d, want 4/3/1/2/1",
			d.Expected, d.Delivered, d.Lost, d.Duplicates, d.Unexpected)
	}
	// Latencies are first arrival minus publish start: 5, 20, 30 ms.
	if want := (Latency{Count: 3, Mean: ms2(55) / 3, P50: ms2(20), P95: ms2(30), P99: ms2(30), Max: ms2(30)}); d.Latency != want {
		t.Errorf("latency = %+v, want %+v", d.Latency, want)
	}
	if d.Retried.Count != 1 || d.Retried.Max != ms2(20) || d.FirstAttempt.Count != 2 || d.FirstAttempt.Max != ms2(30) {
		t.Errorf("retried/first-attempt latency = %+v / %+v, want b (20ms) apart from a and c", d.Retried, d.FirstAttempt)
	}
	if !d.First.Equal(t0.Add(ms2(5))) || !d.Last.Equal(t0.Add(ms2(40))) {
		t.Errorf("first/last = %v/%v, want +5ms/+40ms", d.First, d.Last)
	}
}

// newTestSink returns a sink with a fresh secret, served on loopback, and
// a signer for that secret.
func newTestSink(t *testing.T, failRate float64) (*Sink, string, *signing.Signer) {
	t.Helper()
	secret := signing.NewSecret()
	sink, err := NewSink(secret, failRate)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	signer, err := signing.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return sink, srv.URL, signer
}

// send POSTs a webhook for event id signed by signer (nil: unsigned) and
// returns the status code.
func send(t *testing.T, url string, signer *signing.Signer, msgID, eventID string) int {
	t.Helper()
	body := []byte(`{"hello":"world"}`)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if msgID != "" {
		req.Header.Set("webhook-id", msgID)
	}
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	if eventID != "" {
		req.Header.Set("ce-id", eventID)
	}
	if signer != nil {
		req.Header.Set("webhook-signature", signer.Sign(msgID, now, body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSink_VerifiesSignatures(t *testing.T) {
	sink, url, signer := newTestSink(t, 0)
	other, err := signing.NewSigner(signing.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		signer *signing.Signer
		msgID  string
		want   int
	}{
		{"right secret is accepted", signer, "msg_1", http.StatusNoContent},
		{"wrong secret is refused", other, "msg_2", http.StatusUnauthorized},
		{"unsigned is refused", nil, "msg_3", http.StatusUnauthorized},
		{"no webhook-id is malformed", signer, "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := send(t, url, tt.signer, tt.msgID, "evt-"+tt.msgID); got != tt.want {
				t.Errorf("status = %d, want %d", got, tt.want)
			}
		})
	}
	st := sink.Stats()
	if st.Requests != 4 || st.Accepted != 1 || st.BadSignature != 2 || st.Malformed != 1 {
		t.Errorf("stats = %+v, want 4 requests, 1 accepted, 2 bad signatures, 1 malformed", st)
	}
	if r := sink.Receipts(); len(r) != 1 || r["evt-msg_1"].Count != 1 {
		t.Errorf("receipts = %v, want only evt-msg_1 once", r)
	}
}

func TestSink_GrantsValidationHandshake(t *testing.T) {
	sink, url, _ := newTestSink(t, 0)
	req, err := http.NewRequest(http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("WebHook-Request-Origin", "herald.example.com")
	req.Header.Set("WebHook-Request-Rate", "120")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK ||
		resp.Header.Get("WebHook-Allowed-Origin") != "herald.example.com" ||
		resp.Header.Get("WebHook-Allowed-Rate") != "*" {
		t.Errorf("handshake answer = %d %v, want 200 granting herald.example.com at any rate", resp.StatusCode, resp.Header)
	}
	if st := sink.Stats(); st.Handshakes != 1 || st.Accepted != 0 {
		t.Errorf("stats = %+v, want 1 handshake and nothing accepted", st)
	}
}

func TestSink_KeysByEventIDElseWebhookID(t *testing.T) {
	sink, url, signer := newTestSink(t, 0)
	send(t, url, signer, "msg_a", "evt-a")
	send(t, url, signer, "msg_b", "")
	r := sink.Receipts()
	if _, ok := r["evt-a"]; !ok {
		t.Errorf("no receipt under the ce-id evt-a: %v", r)
	}
	if _, ok := r["msg_b"]; !ok {
		t.Errorf("no receipt under the webhook-id msg_b: %v", r)
	}
}

func TestSink_CountsDuplicateDeliveries(t *testing.T) {
	sink, url, signer := newTestSink(t, 0)
	for range 3 {
		if got := send(t, url, signer, "msg_dup", "evt-dup"); got != http.StatusNoContent {
			t.Fatalf("status = %d, want 204 (a duplicate is still accepted)", got)
		}
	}
	d := Account([]Sent{{ID: "evt-dup", Accepted: true}}, sink.Receipts())
	if d.Delivered != 1 || d.Duplicates != 2 {
		t.Errorf("delivered/duplicates = %d/%d, want 1/2", d.Delivered, d.Duplicates)
	}
}

func TestSink_FailsFractionOfFirstAttemptsOnlyOnce(t *testing.T) {
	sink, url, signer := newTestSink(t, 0.25)
	var failed []string
	for i := range 8 {
		id := "msg_" + strconv.Itoa(i)
		if send(t, url, signer, id, "evt-"+strconv.Itoa(i)) == http.StatusInternalServerError {
			failed = append(failed, id)
		}
	}
	if len(failed) != 2 {
		t.Fatalf("first attempts failed = %v, want 2 of 8", failed)
	}
	for _, id := range failed {
		if got := send(t, url, signer, id, "evt-"+id[len("msg_"):]); got != http.StatusNoContent {
			t.Errorf("retry of %s = %d, want 204", id, got)
		}
	}
	st := sink.Stats()
	if st.Failed != 2 || st.Retried != 2 || st.Accepted != 8 {
		t.Errorf("stats = %+v, want 2 failed, 2 retried, 8 accepted", st)
	}
	if n := sink.Delivered(); n != 8 {
		t.Errorf("delivered = %d, want 8", n)
	}
	retried := 0
	for id, r := range sink.Receipts() {
		if r.Retried {
			retried++
			if !slices.Contains(failed, "msg_"+id[len("evt-"):]) {
				t.Errorf("receipt %s marked retried, but its first attempt was not failed", id)
			}
		}
	}
	if retried != 2 {
		t.Errorf("receipts marked retried = %d, want 2", retried)
	}
}

func TestSink_AwaitWaitsForDistinctEvents(t *testing.T) {
	sink, url, signer := newTestSink(t, 0)
	done := make(chan error, 1)
	go func() { done <- sink.Await(context.Background(), 2) }()
	send(t, url, signer, "msg_1", "evt-1")
	send(t, url, signer, "msg_1", "evt-1") // a duplicate does not count
	select {
	case err := <-done:
		t.Fatalf("Await returned %v after one distinct event, want it to wait", err)
	default:
	}
	send(t, url, signer, "msg_2", "evt-2")
	if err := <-done; err != nil {
		t.Errorf("Await = %v, want nil", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sink.Await(ctx, 3); err != context.Canceled {
		t.Errorf("Await with a canceled context = %v, want context.Canceled", err)
	}
}

func TestBaseline_DeliversEveryEventVerified(t *testing.T) {
	secret := signing.NewSecret()
	sink, err := NewSink(secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	const events = 200
	run, err := Baseline(context.Background(), BaselineConfig{
		URL: srv.URL, Secret: secret, Events: events, Workers: 4, Prefix: "base-",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Sent) != events || run.Errors != 0 || len(run.Latency) != events {
		t.Fatalf("sent %d, errors %d, latencies %d; want %d, 0, %d", len(run.Sent), run.Errors, len(run.Latency), events, events)
	}
	d := Account(run.Sent, sink.Receipts())
	if d.Expected != events || d.Delivered != events || d.Lost != 0 || d.Duplicates != 0 {
		t.Errorf("delivery = %+v, want all %d delivered once", d, events)
	}
	if st := sink.Stats(); st.BadSignature != 0 || st.Requests != events {
		t.Errorf("sink stats = %+v, want %d verified requests", st, events)
	}
}

func TestEventData_IsOneKiBOfJSON(t *testing.T) {
	for _, seq := range []int{-1, 0, 123456789} {
		d := eventData(seq)
		if len(d) != eventSize || !json.Valid([]byte(d)) {
			t.Errorf("eventData(%d): %d bytes, valid JSON %v; want %d bytes of JSON", seq, len(d), json.Valid([]byte(d)), eventSize)
		}
	}
}

func TestResult_RatioUsesBothBaselines(t *testing.T) {
	r := &Result{Baseline: &BaselineResult{Rate: 30000}}
	if got := r.baselineRate(); got != 30000 {
		t.Errorf("one baseline: rate %v, want 30000", got)
	}
	r.BaselineBefore = &BaselineResult{Rate: 40000}
	if got := r.baselineRate(); got != 35000 {
		t.Errorf("before and after: rate %v, want their mean 35000", got)
	}
	if got := (&Result{}).baselineRate(); got != 0 {
		t.Errorf("no baseline: rate %v, want 0", got)
	}
}

func TestSplitTargets_CommaSeparatedAddresses(t *testing.T) {
	got, err := splitTargets("127.0.0.1:50051, 127.0.0.1:50061")
	if err != nil || !slices.Equal(got, []string{"127.0.0.1:50051", "127.0.0.1:50061"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if got, err := splitTargets("h:1"); err != nil || !slices.Equal(got, []string{"h:1"}) {
		t.Fatalf("one address: got %q, %v", got, err)
	}
	if got, err := splitTargets(""); err != nil || got != nil {
		t.Fatalf("empty: got %q, %v", got, err)
	}
	for _, bad := range []string{"h:1,", ",h:1", "h:1,,h:2", " "} {
		if _, err := splitTargets(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestValidate_RefusesAnEmptyAddressInTarget(t *testing.T) {
	c := DefaultConfig()
	c.Target = "127.0.0.1:50051,"
	if err := c.validate(); err == nil {
		t.Fatal("no error")
	}
	c = DefaultConfig()
	c.Target = "127.0.0.1:50051,127.0.0.1:50061"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConnTargets_SpreadsPublishersRoundRobin(t *testing.T) {
	one := []string{"a"}
	if got := connTargets(one, 64); !slices.Equal(got, []string{"a", "a", "a", "a"}) {
		t.Errorf("one target, 64 publishers: %q", got)
	}
	if got := connTargets(one, 1000); len(got) != 8 {
		t.Errorf("one target, 1000 publishers: %d connections, want at most 8", len(got))
	}
	// Every target gets a connection even with fewer publishers than
	// the 16 a connection is for.
	if got := connTargets([]string{"a", "b"}, 1); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("two targets, one publisher: %q", got)
	}
	// Publisher i uses connection i%len: with the connections a multiple
	// of the targets, each target gets an equal share of the publishers.
	for _, targets := range [][]string{{"a", "b"}, {"a", "b", "c"}, {"a", "b", "c", "d", "e"}} {
		for _, publishers := range []int{1, 16, 64, 100, 1000} {
			conns := connTargets(targets, publishers)
			if len(conns)%len(targets) != 0 {
				t.Fatalf("%d targets, %d publishers: %d connections", len(targets), publishers, len(conns))
			}
			share := map[string]int{}
			for i := range publishers {
				share[conns[i%len(conns)]]++
			}
			for _, tg := range targets {
				if d := share[tg] - publishers/len(targets); d < 0 || d > 1 {
					t.Errorf("%d targets, %d publishers: %s has %d publishers", len(targets), publishers, tg, share[tg])
				}
			}
		}
	}
}
