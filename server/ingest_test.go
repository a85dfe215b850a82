package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/signing"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

// ingestEnv is a real HTTP edge on loopback over a real publisher and a
// SQLite store with one subscription that matches every event.
type ingestEnv struct {
	url       string // of IngestPath
	ingest    *Ingest
	publisher *publish.Publisher
	store     *sqlite.Store
}

func newIngestEnv(t testing.TB, opts IngestOptions) *ingestEnv {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now()
	err = s.SubscriptionInsert(ctx, &store.Subscription{
		ID: "sub_all", Sink: "http://127.0.0.1:1/", Protocol: "HTTP", State: store.SubscriptionActive,
		Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.New(s, nil)
	if err := cat.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	p := publish.New(s, cat, publish.Config{})
	t.Cleanup(p.Close)
	in := NewIngest(p, opts)
	t.Cleanup(in.Close)
	svc := NewServices(p, s, cat, nil, Options{})
	srv := httptest.NewServer(HTTPHandler(func(context.Context) (string, error) { return "", nil }, svc, in))
	t.Cleanup(srv.Close)
	return &ingestEnv{url: srv.URL + IngestPath, ingest: in, publisher: p, store: s}
}

// openIngest authenticates nobody.
var openIngest = IngestOptions{}

// do sends one request and returns the response with its body read.
func do(t testing.TB, method, url string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// binaryHeader is a binary-mode event's headers; values are sent as is.
func binaryHeader(id string, extra ...string) http.Header {
	h := http.Header{
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {id},
		"Ce-Source":      {"/orders"},
		"Ce-Type":        {"order.created"},
		"Content-Type":   {"application/json"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = []string{extra[i+1]}
	}
	return h
}

var (
	structuredHeader = http.Header{"Content-Type": {"application/cloudevents+json"}}
	batchHeader      = http.Header{"Content-Type": {"application/cloudevents-batch+json"}}
)

func structuredEvent(id string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"/orders","type":"order.created","datacontenttype":"application/json","data":{"n":1}}`
}

func decodeResults(t testing.TB, resp *http.Response, body []byte) []IngestResult {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var r IngestResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return r.Results
}

func decodeProblem(t testing.TB, resp *http.Response, body []byte) Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d, response status %d", p.Status, resp.StatusCode)
	}
	return p
}

// storedEvent reads back the event a delivery was created for.
func (e *ingestEnv) storedEvent(t testing.TB, deliveryID string) *cloudeventsv1.CloudEvent {
	t.Helper()
	d, err := e.store.DeliveryGet(context.Background(), deliveryID)
	if err != nil {
		t.Fatal(err)
	}
	var pe cloudeventsv1.CloudEvent
	if err := proto.Unmarshal(d.EventPayload, &pe); err != nil {
		t.Fatal(err)
	}
	return &pe
}

func TestIngest_BinaryModeDecodesPercentEncodedHeaders(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	h := binaryHeader("b1", "Ce-Subject", "Euro%20%e2%82%ac%20%F0%9F%98%80", "Ce-Region", `"eu%2Dwest"`)
	resp, body := do(t, http.MethodPost, env.url, h, []byte(`{"total":42}`))
	res := decodeResults(t, resp, body)
	if len(res) != 1 || res[0].Status != "accepted" || res[0].Source != "/orders" || res[0].ID != "b1" || len(res[0].DeliveryIDs) != 1 {
		t.Fatalf("results %+v, want one accepted /orders b1 with one delivery", res)
	}
	pe := env.storedEvent(t, res[0].DeliveryIDs[0])
	if got := pe.GetAttributes()["subject"].GetCeString(); got != "Euro € 😀" {
		t.Errorf("subject %q, want %q", got, "Euro € 😀")
	}
	if got := pe.GetAttributes()["region"].GetCeString(); got != "eu-west" {
		t.Errorf("region %q, want %q (quoted string, then percent-decoded)", got, "eu-west")
	}
	if got := pe.GetAttributes()["datacontenttype"].GetCeString(); got != "application/json" {
		t.Errorf("datacontenttype %q, want the Content-Type", got)
	}
	if got := pe.GetTextData(); got != `{"total":42}` {
		t.Errorf("data %q, want the body", got)
	}
}

func TestIngest_BinaryModeKeepsNonUTF8TextDataAsBytes(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	data := []byte{'a', 0xff, 'b'}
	resp, body := do(t, http.MethodPost, env.url, binaryHeader("b2", "Content-Type", "text/plain"), data)
	res := decodeResults(t, resp, body)
	if got := env.storedEvent(t, res[0].DeliveryIDs[0]).GetBinaryData(); !bytes.Equal(got, data) {
		t.Errorf("data %q, want %q", got, data)
	}
}

func TestIngest_StructuredMode(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	ev := `{"specversion":"1.0","id":"s1","source":"/orders","type":"order.created","subject":"Euro € 😀","tenant":"acme","data":{"n":1}}`
	resp, body := do(t, http.MethodPost, env.url, structuredHeader, []byte(ev))
	res := decodeResults(t, resp, body)
	if len(res) != 1 || res[0].Status != "accepted" || res[0].ID != "s1" || len(res[0].DeliveryIDs) != 1 {
		t.Fatalf("results %+v, want one accepted s1 with one delivery", res)
	}
	pe := env.storedEvent(t, res[0].DeliveryIDs[0])
	if got := pe.GetAttributes()["subject"].GetCeString(); got != "Euro € 😀" {
		t.Errorf("subject %q", got)
	}
	if got := pe.GetAttributes()["tenant"].GetCeString(); got != "acme" {
		t.Errorf("tenant %q", got)
	}
}

func TestIngest_BatchedModeAnswersOneResultPerEvent(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	batch := "[" + structuredEvent("m1") + "," + structuredEvent("m2") + "," + structuredEvent("m1") + "]"
	resp, body := do(t, http.MethodPost, env.url, batchHeader, []byte(batch))
	res := decodeResults(t, resp, body)
	want := []struct{ id, status string }{{"m1", "accepted"}, {"m2", "accepted"}, {"m1", "duplicate"}}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(res), len(want), body)
	}
	for i, w := range want {
		if res[i].ID != w.id || res[i].Status != w.status || len(res[i].DeliveryIDs) != 1 {
			t.Errorf("result %d: %+v, want id %s status %s with one delivery", i, res[i], w.id, w.status)
		}
	}
}

func TestIngest_SameSourceAndIDIsDuplicateAcrossModes(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	resp, body := do(t, http.MethodPost, env.url, binaryHeader("d1"), []byte(`{}`))
	first := decodeResults(t, resp, body)
	again := []struct {
		name   string
		header http.Header
		body   string
	}{
		{"binary", binaryHeader("d1"), `{}`},
		{"structured", structuredHeader, structuredEvent("d1")},
		{"batched", batchHeader, "[" + structuredEvent("d1") + "]"},
	}
	for _, tc := range again {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, http.MethodPost, env.url, tc.header, []byte(tc.body))
			res := decodeResults(t, resp, body)
			if len(res) != 1 || res[0].Status != "duplicate" {
				t.Fatalf("results %+v, want one duplicate", res)
			}
			if !slices.Equal(res[0].DeliveryIDs, first[0].DeliveryIDs) {
				t.Errorf("delivery ids %v, want the first publish's %v", res[0].DeliveryIDs, first[0].DeliveryIDs)
			}
		})
	}
}

func TestIngest_RejectsBadRequests(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	bigData := strings.Repeat("x", policy.MaxEventSize)
	tests := []struct {
		name   string
		method string
		header http.Header
		body   string
		status int
		// mention is text the problem must contain (detail or a field).
		mention string
	}{
		{"invalid UTF-8 in a ce- header", http.MethodPost, binaryHeader("u1", "Ce-Subject", "%C0%A0"), `{}`, 400, "Ce-Subject"},
		{"a bare percent does not hide invalid UTF-8", http.MethodPost, binaryHeader("u2", "Ce-Subject", "100%%C0%A0"), `{}`, 400, "Ce-Subject"},
		{"no ce-specversion", http.MethodPost, http.Header{"Ce-Id": {"x"}}, `{}`, 400, "specversion"},
		{"upper-case extension in structured mode", http.MethodPost, structuredHeader,
			`{"specversion":"1.0","id":"x","source":"/s","type":"t","Foo":"bar"}`, 400, "Foo"},
		{"upper-case extension in a batch", http.MethodPost, batchHeader,
			`[` + structuredEvent("ok") + `,{"specversion":"1.0","id":"x","source":"/s","type":"t","MyExt":"1"}]`, 400, "MyExt"},
		{"missing type", http.MethodPost, structuredHeader, `{"specversion":"1.0","id":"x","source":"/s"}`, 400, "type"},
		{"malformed JSON", http.MethodPost, structuredHeader, `{"specversion":`, 400, ""},
		{"unsupported format", http.MethodPost, http.Header{"Content-Type": {"application/cloudevents+xml"}}, `<e/>`, 415, "application/cloudevents+xml"},
		{"binary body over the limit", http.MethodPost, binaryHeader("big1"), bigData + "x", 413, ""},
		{"structured event over the limit", http.MethodPost, structuredHeader,
			`{"specversion":"1.0","id":"big2","source":"/s","type":"t","datacontenttype":"text/plain","data":"` + bigData + `"}`, 413, "events[0]"},
		{"GET", http.MethodGet, nil, ``, 405, "GET"},
		{"PUT", http.MethodPut, nil, `{}`, 405, "PUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, env.url, tc.header, []byte(tc.body))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			p := decodeProblem(t, resp, body)
			if !strings.Contains(string(body), tc.mention) {
				t.Errorf("problem %+v does not mention %q", p, tc.mention)
			}
			if tc.status == 405 && resp.Header.Get("Allow") != "POST, OPTIONS" {
				t.Errorf("Allow %q, want POST, OPTIONS", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestIngest_InvalidEventsNameTheFields(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	// An empty batch passes the HTTP binding and fails publish validation.
	resp, body := do(t, http.MethodPost, env.url, batchHeader, []byte(`[]`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
	}
	p := decodeProblem(t, resp, body)
	if len(p.Violations) != 1 || p.Violations[0].Field != "events" || p.Violations[0].Description == "" {
		t.Errorf("violations %+v, want one on events", p.Violations)
	}
}

func TestIngest_BatchWithOneBadEventStoresNothing(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	bad := `{"specversion":"1.0","id":"v1","source":"/s","type":"t","dataschema":"relative/schema"}`
	resp, body := do(t, http.MethodPost, env.url, batchHeader, []byte("["+structuredEvent("v0")+","+bad+"]"))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
	}
	if p := decodeProblem(t, resp, body); !strings.Contains(p.Detail, "event 1") {
		t.Errorf("detail %q does not name event 1", p.Detail)
	}
	resp, body = do(t, http.MethodPost, env.url, structuredHeader, []byte(structuredEvent("v0")))
	if res := decodeResults(t, resp, body); res[0].Status != "accepted" {
		t.Errorf("v0 %s after its batch was rejected, want accepted", res[0].Status)
	}
}

// withKeys makes env's ingest authenticate with a keyring over env's
// store holding these keys (secret -> key), and returns the keyring.
func withKeys(t *testing.T, env *ingestEnv, keys map[string]*store.APIKey) *auth.Keyring {
	t.Helper()
	for secret, k := range keys {
		k.Hash = auth.Hash(secret)
		if err := env.store.APIKeyInsert(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := auth.NewKeyring(env.store, auth.KeyringConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	env.ingest.opts.Auth = kr
	return kr
}

func TestIngest_APIKeys(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	one, two, reader, unknown := auth.NewKey(), auth.NewKey(), auth.NewKey(), auth.NewKey()
	withKeys(t, env, map[string]*store.APIKey{
		one:    {ID: "key_1", Scopes: []policy.Scope{policy.ScopePublish}},
		two:    {ID: "key_2", Scopes: []policy.Scope{policy.ScopeAdmin}},
		reader: {ID: "key_3", Scopes: []policy.Scope{policy.ScopeDeliveriesRead}},
	})
	tests := []struct {
		name   string
		auth   string // Authorization header, if any
		query  string // appended to the URL
		status int
	}{
		{"no key", "", "", 401},
		{"unknown key", "Bearer " + unknown, "", 401},
		{"prefix of a key", "Bearer " + one[:len(one)-1], "", 401},
		{"key with a suffix", "Bearer " + one + "A", "", 401},
		{"empty bearer", "Bearer ", "", 401},
		{"basic scheme", "Basic a2V5LW9uZQ==", "", 401},
		{"a key without the publish scope", "Bearer " + reader, "", 403},
		{"publish key", "Bearer " + one, "", 200},
		{"admin key, lower-case scheme", "bearer " + two, "", 200},
		{"access_token parameter", "", "?access_token=" + two, 200},
		{"wrong access_token", "", "?access_token=nope", 401},
		{"header and parameter", "Bearer " + one, "?access_token=" + one, 400},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := binaryHeader("k" + string(rune('a'+i)))
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			resp, body := do(t, http.MethodPost, env.url+tc.query, h, []byte(`{}`))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
			}
			if tc.query != "" && tc.status == 200 && resp.Header.Get("Cache-Control") != "private" {
				t.Errorf("Cache-Control %q after a query token, want private", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestIngest_AKeyOverItsPublishRateGets429AndNothingIsStored(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	key := auth.NewKey()
	withKeys(t, env, map[string]*store.APIKey{key: {ID: "key_1", Scopes: []policy.Scope{policy.ScopePublish}, PublishRate: 0.001, PublishBurst: 2}})
	h := binaryHeader("r1")
	h.Set("Authorization", "Bearer "+key)
	resp, body := do(t, http.MethodPost, env.url, h, []byte(`{}`))
	decodeResults(t, resp, body)
	batch := `[` + structuredEvent("r2") + `,` + structuredEvent("r3") + `]`
	bh := http.Header{"Content-Type": {"application/cloudevents-batch+json"}, "Authorization": {"Bearer " + key}}
	resp, body = do(t, http.MethodPost, env.url, bh, []byte(batch))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a batch of 2 after 1 of a burst of 2: status %d, want 429: %s", resp.StatusCode, body)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	decodeProblem(t, resp, body)
	ds, err := env.store.DeliveryList(t.Context(), store.DeliveryListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].EventID != "r1" {
		t.Errorf("stored %d deliveries, want only r1's", len(ds))
	}
}

func TestIngest_Answers503WhenPublisherIsClosed(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	env.publisher.Close()
	resp, body := do(t, http.MethodPost, env.url, binaryHeader("c1"), []byte(`{}`))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	decodeProblem(t, resp, body)
}

func TestIngest_Answers503WhenStoreFails(t *testing.T) {
	env := newIngestEnv(t, openIngest)
	if err := env.store.Close(); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, http.MethodPost, env.url, binaryHeader("f1"), []byte(`{}`))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", resp.StatusCode, body)
	}
	decodeProblem(t, resp, body)
}

func TestIngest_ValidationHandshake(t *testing.T) {
	allowed := []string{"trusted.example.com", "Events.Partner.Example"}
	tests := []struct {
		name        string
		rate        int
		header      http.Header
		status      int
		wantOrigin  string // WebHook-Allowed-Origin; "" means absent
		wantRate    string
		badField    string // violation expected on a 400
		callbackSet bool
	}{
		{name: "allowed origin", header: http.Header{"Webhook-Request-Origin": {"trusted.example.com"}},
			status: 200, wantOrigin: "trusted.example.com", wantRate: "*"},
		{name: "allowed origin echoed as requested, case-insensitively",
			header: http.Header{"Webhook-Request-Origin": {"events.partner.example"}},
			status: 200, wantOrigin: "events.partner.example", wantRate: "*"},
		{name: "configured rate", rate: 120,
			header: http.Header{"Webhook-Request-Origin": {"trusted.example.com"}, "Webhook-Request-Rate": {"600"}},
			status: 200, wantOrigin: "trusted.example.com", wantRate: "120"},
		{name: "unlimited rate granted on request",
			header: http.Header{"Webhook-Request-Origin": {"trusted.example.com"}, "Webhook-Request-Rate": {"60"}},
			status: 200, wantOrigin: "trusted.example.com", wantRate: "*"},
		{name: "callback offered but not auto-granted: immediate grant",
			header: http.Header{"Webhook-Request-Origin": {"trusted.example.com"}, "Webhook-Request-Callback": {"https://trusted.example.com/cb?k=1"}},
			status: 200, wantOrigin: "trusted.example.com", wantRate: "*"},
		{name: "refused origin", header: http.Header{"Webhook-Request-Origin": {"attacker.tld"}}, status: 403},
		{name: "prefix bypass refused", header: http.Header{"Webhook-Request-Origin": {"trusted.example.com.attacker.tld"}}, status: 403},
		{name: "suffix of an allowed origin refused", header: http.Header{"Webhook-Request-Origin": {"example.com"}}, status: 403},
		{name: "subdomain of an allowed origin refused", header: http.Header{"Webhook-Request-Origin": {"x.trusted.example.com"}}, status: 403},
		{name: "extended label refused", header: http.Header{"Webhook-Request-Origin": {"trusted.example.community"}}, status: 403},
		{name: "wildcard refused", header: http.Header{"Webhook-Request-Origin": {"*"}}, status: 403},
		{name: "no origin", header: http.Header{"Webhook-Request-Rate": {"60"}}, status: 400, badField: "WebHook-Request-Origin"},
		{name: "two origins", header: http.Header{"Webhook-Request-Origin": {"trusted.example.com", "attacker.tld"}}, status: 400, badField: "WebHook-Request-Origin"},
		{name: "zero rate", header: http.Header{"Webhook-Request-Origin": {"trusted.example.com"}, "Webhook-Request-Rate": {"0"}}, status: 400, badField: "WebHook-Request-Rate"},
		{name: "non-numeric rate", header: http.Header{"Webhook-Request-Origin": {"trusted.example.com"}, "Webhook-Request-Rate": {"fast"}}, status: 400, badField: "WebHook-Request-Rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newIngestEnv(t, IngestOptions{AllowedOrigins: allowed, Rate: tc.rate})
			resp, body := do(t, http.MethodOptions, env.url, tc.header, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Values("Webhook-Allowed-Origin"); tc.wantOrigin == "" && got != nil || tc.wantOrigin != "" && !slices.Equal(got, []string{tc.wantOrigin}) {
				t.Errorf("WebHook-Allowed-Origin %q, want %q", got, tc.wantOrigin)
			}
			if got := resp.Header.Get("Webhook-Allowed-Rate"); got != tc.wantRate {
				t.Errorf("WebHook-Allowed-Rate %q, want %q", got, tc.wantRate)
			}
			if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "POST") {
				t.Errorf("Allow %q, want POST in it", allow)
			}
			if tc.badField != "" {
				p := decodeProblem(t, resp, body)
				if len(p.Violations) != 1 || p.Violations[0].Field != tc.badField {
					t.Errorf("violations %+v, want one on %s", p.Violations, tc.badField)
				}
			}
		})
	}
}

// callbackServer is a TLS server on loopback standing in for the sender's
// callback endpoint. Its client reaches it for example.com and every
// subdomain (see httptest.Server.Client).
type callbackServer struct {
	srv   *httptest.Server
	calls chan *http.Request
	hold  chan struct{} // closed to let held calls answer
	once  sync.Once
}

func newCallbackServer(t testing.TB, buffer int) *callbackServer {
	t.Helper()
	cs := &callbackServer{calls: make(chan *http.Request, buffer), hold: make(chan struct{})}
	cs.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.calls <- r.Clone(context.Background())
		<-cs.hold
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(cs.srv.Close)
	t.Cleanup(cs.release)
	return cs
}

// release lets held and later calls answer.
func (cs *callbackServer) release() {
	cs.once.Do(func() { close(cs.hold) })
}

func (cs *callbackServer) next(t testing.TB) *http.Request {
	t.Helper()
	select {
	case r := <-cs.calls:
		return r
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("no callback grant arrived")
		return nil
	}
}

func TestIngest_CallbackGrant(t *testing.T) {
	cb := newCallbackServer(t, 1)
	cb.release()
	env := newIngestEnv(t, IngestOptions{
		AllowedOrigins: []string{"example.com"}, Rate: 90,
		AutoGrantCallbacks: true, CallbackClient: cb.srv.Client(),
	})
	h := http.Header{
		"Webhook-Request-Origin":   {"Example.com"},
		"Webhook-Request-Callback": {"https://hooks.example.com/confirm?id=12&key=s3cret#frag"},
		"Webhook-Request-Rate":     {"120"},
	}
	resp, body := do(t, http.MethodOptions, env.url, h, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Webhook-Allowed-Origin") + resp.Header.Get("Webhook-Allowed-Rate"); got != "" {
		t.Errorf("the response carries WebHook-Allowed-* %q; the callback flow withholds them", got)
	}
	r := cb.next(t)
	if r.Method != http.MethodPost {
		t.Errorf("callback method %s, want POST", r.Method)
	}
	if r.Host != "hooks.example.com" || r.URL.Path != "/confirm" || r.URL.Query().Get("key") != "s3cret" || r.URL.Query().Get("id") != "12" {
		t.Errorf("callback to %s%s, want hooks.example.com/confirm?id=12&key=s3cret", r.Host, r.URL)
	}
	if got := r.Header.Get("Webhook-Allowed-Origin"); got != "Example.com" {
		t.Errorf("callback WebHook-Allowed-Origin %q, want the requested origin", got)
	}
	if got := r.Header.Get("Webhook-Allowed-Rate"); got != "90" {
		t.Errorf("callback WebHook-Allowed-Rate %q, want 90", got)
	}
}

func TestIngest_CallbackRefusedForOtherHosts(t *testing.T) {
	cb := newCallbackServer(t, 16)
	cb.release()
	env := newIngestEnv(t, IngestOptions{
		AllowedOrigins:     []string{"example.com", "trusted.example.org"},
		AutoGrantCallbacks: true, CallbackClient: cb.srv.Client(),
	})
	tests := []struct {
		name, origin, callback string
		status                 int
	}{
		{"host not under the origin", "trusted.example.org", "https://example.com/cb", 400},
		{"origin as a prefix of the host", "example.com", "https://example.com.attacker.tld/cb", 400},
		{"host only ending with the origin's text", "example.com", "https://badexample.com/cb", 400},
		{"plain http", "example.com", "http://hooks.example.com/cb", 400},
		{"user information", "example.com", "https://attacker.tld@hooks.example.com/cb", 400},
		{"relative URL", "example.com", "/cb", 400},
		{"refused origin", "attacker.example.net", "https://hooks.example.com/cb", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Webhook-Request-Origin": {tc.origin}, "Webhook-Request-Callback": {tc.callback}}
			resp, body := do(t, http.MethodOptions, env.url, h, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if resp.Header.Get("Webhook-Allowed-Origin") != "" {
				t.Error("a refused handshake carries WebHook-Allowed-Origin")
			}
		})
	}
	env.ingest.Close() // waits for any grant in flight
	if n := len(cb.calls); n != 0 {
		t.Errorf("%d callbacks were made, want none", n)
	}
}

func TestIngest_CallbackGrantsInFlightAreBounded(t *testing.T) {
	cb := newCallbackServer(t, MaxCallbacksInFlight)
	env := newIngestEnv(t, IngestOptions{
		AllowedOrigins:     []string{"example.com"},
		AutoGrantCallbacks: true, CallbackClient: cb.srv.Client(),
	})
	h := http.Header{"Webhook-Request-Origin": {"example.com"}, "Webhook-Request-Callback": {"https://example.com/cb"}}
	for i := range MaxCallbacksInFlight {
		if resp, body := do(t, http.MethodOptions, env.url, h, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("handshake %d: status %d, want 200: %s", i, resp.StatusCode, body)
		}
	}
	resp, body := do(t, http.MethodOptions, env.url, h, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("handshake beyond the bound: status %d, Retry-After %q; want 503 with Retry-After: %s",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for range MaxCallbacksInFlight {
		cb.next(t)
	}
	cb.release()
	env.ingest.Close()
}

func FuzzIngest(f *testing.F) {
	f.Add("application/cloudevents+json", "id", "1", []byte(structuredEvent("1")))
	f.Add("application/cloudevents-batch+json", "id", "1", []byte("["+structuredEvent("1")+"]"))
	f.Add("application/cloudevents-batch+json", "id", "1", []byte(`[{},null,1,"x",[]]`))
	f.Add("text/plain", "subject", "%C0%A0", []byte{0xff, 0xfe})
	f.Add("text/plain", "time", "not-a-time", []byte("x"))
	f.Add("application/json", "dataschema", "rel/ative", []byte(`{}`))
	f.Add(`application/cloudevents+json; charset="`, "Foo", `"unterminated`, []byte(`{"specversion":"1.0"`))
	f.Add("application/cloudevents+json", "x", "y", []byte(`{"specversion":"1.0","id":"1","source":"%zz","type":"t","data_base64":"!!"}`))
	env := newIngestEnv(f, openIngest)
	f.Fuzz(func(t *testing.T, contentType, name, value string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, IngestPath, bytes.NewReader(body))
		r.Header["Content-Type"] = []string{contentType}
		r.Header["Ce-Specversion"] = []string{"1.0"}
		r.Header["Ce-Id"] = []string{"fuzz"}
		r.Header["Ce-Source"] = []string{"/fuzz"}
		r.Header["Ce-Type"] = []string{"fuzz"}
		r.Header["Ce-"+name] = []string{value}
		w := httptest.NewRecorder()
		env.ingest.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if w.Code != http.StatusOK {
			var p Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code {
				t.Fatalf("status %d with body %q, want a problem", w.Code, w.Body)
			}
		}
	})
}
