package cehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

func newEvent(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("evt-1")
	e.SetSource("https://orders.example.com/shop")
	e.SetType("com.example.order.created")
	e.SetSubject("Euro € 😀")
	e.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC))
	e.SetDataSchema("https://schemas.example.com/order.json")
	e.SetExtension("tenant", "acme corp")
	e.SetExtension("priority", int32(7))
	e.SetExtension("urgent", true)
	if err := e.SetData("application/json", map[string]any{"order": 42}); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	return &e
}

// serve starts a loopback server that reads each request with ReadRequest
// and hands the result back.
type readResult struct {
	events []event.Event
	err    error
}

func serve(t *testing.T) (*httptest.Server, <-chan readResult) {
	t.Helper()
	results := make(chan readResult, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		events, err := ReadRequest(r, 1<<20)
		results <- readResult{events, err}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, results
}

func post(t *testing.T, srv *httptest.Server, h http.Header, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
}

func TestWriteBinary_SetsPercentEncodedHeaders(t *testing.T) {
	e := newEvent(t)
	h := http.Header{}
	body, err := WriteBinary(h, e)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ce-specversion":     "1.0",
		"ce-id":              "evt-1",
		"ce-source":          "https://orders.example.com/shop",
		"ce-type":            "com.example.order.created",
		"ce-subject":         "Euro%20%E2%82%AC%20%F0%9F%98%80",
		"ce-time":            "2026-01-02T03:04:05.0000006Z",
		"ce-dataschema":      "https://schemas.example.com/order.json",
		"ce-tenant":          "acme%20corp",
		"ce-priority":        "7",
		"ce-urgent":          "true",
		"content-type":       "application/json",
		"ce-datacontenttype": "",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
		if vals := h.Values(k); v != "" && len(vals) != 1 {
			t.Errorf("header %s has %d values", k, len(vals))
		}
	}
	if len(h) != len(want)-1 {
		t.Errorf("got %d headers, want %d: %v", len(h), len(want)-1, h)
	}
	if string(body) != `{"order":42}` {
		t.Errorf("body = %s", body)
	}
}

func TestWriteBinary_RoundTripsThroughServer(t *testing.T) {
	srv, results := serve(t)
	sent := newEvent(t)
	h := http.Header{}
	body, err := WriteBinary(h, sent)
	if err != nil {
		t.Fatal(err)
	}
	post(t, srv, h, body)
	res := <-results
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.events) != 1 {
		t.Fatalf("got %d events", len(res.events))
	}
	got := res.events[0]
	checkSameEvent(t, &got, sent)
}

func checkSameEvent(t *testing.T, got, want *event.Event) {
	t.Helper()
	pairs := []struct{ name, got, want string }{
		{"specversion", got.SpecVersion(), want.SpecVersion()},
		{"id", got.ID(), want.ID()},
		{"source", got.Source(), want.Source()},
		{"type", got.Type(), want.Type()},
		{"subject", got.Subject(), want.Subject()},
		{"dataschema", got.DataSchema(), want.DataSchema()},
		{"datacontenttype", got.DataContentType(), want.DataContentType()},
		{"data", string(got.Data()), string(want.Data())},
	}
	for _, p := range pairs {
		if p.got != p.want {
			t.Errorf("%s = %q, want %q", p.name, p.got, p.want)
		}
	}
	if !got.Time().Equal(want.Time()) {
		t.Errorf("time = %v, want %v", got.Time(), want.Time())
	}
	if len(got.Extensions()) != len(want.Extensions()) {
		t.Errorf("extensions = %v, want %v", got.Extensions(), want.Extensions())
	}
	for name, wv := range want.Extensions() {
		ws, _ := types.Format(wv)
		gs, _ := types.Format(got.Extensions()[name])
		if gs != ws {
			t.Errorf("extension %s = %q, want %q", name, gs, ws)
		}
	}
}

func TestWriteStructured_ParsesWithSDK(t *testing.T) {
	sent := newEvent(t)
	ct, body, err := WriteStructured(sent)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "application/cloudevents+json" {
		t.Errorf("content type = %q", ct)
	}
	var got event.Event
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	checkSameEvent(t, &got, sent)

	srv, results := serve(t)
	post(t, srv, http.Header{"Content-Type": {ct}}, body)
	res := <-results
	if res.err != nil {
		t.Fatal(res.err)
	}
	checkSameEvent(t, &res.events[0], sent)
}

func TestWrite_RejectsInvalidEvents(t *testing.T) {
	tests := []struct {
		name   string
		modify func(e *event.Event)
	}{
		{"no context", func(e *event.Event) { e.Context = nil }},
		{"specversion 0.3", func(e *event.Event) { e.SetSpecVersion("0.3") }},
		{"missing id", func(e *event.Event) { e.Context.(*event.EventContextV1).ID = "" }},
		{"missing source", func(e *event.Event) { e.Context.(*event.EventContextV1).Source = types.URIRef{} }},
		{"extension named data", func(e *event.Event) { e.Context.(*event.EventContextV1).Extensions["data"] = "x" }},
		{"extension with dash", func(e *event.Event) { e.Context.(*event.EventContextV1).Extensions["foo-bar"] = "x" }},
		{"upper-case extension", func(e *event.Event) { e.Context.(*event.EventContextV1).Extensions["Foo"] = "x" }},
		{"extension of non-CloudEvents type", func(e *event.Event) { e.Context.(*event.EventContextV1).Extensions["foo"] = struct{}{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEvent(t)
			tt.modify(e)
			if _, err := WriteBinary(http.Header{}, e); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("WriteBinary error = %v, want ErrInvalidEvent", err)
			}
			if tt.name == "extension of non-CloudEvents type" {
				return // sdk-go's JSON writer decides how to render it
			}
			if _, _, err := WriteStructured(e); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("WriteStructured error = %v, want ErrInvalidEvent", err)
			}
		})
	}
	t.Run("datacontenttype that would break the header", func(t *testing.T) {
		e := newEvent(t)
		e.SetDataContentType("text/plain\r\nX-Evil: 1")
		if _, err := WriteBinary(http.Header{}, e); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("WriteBinary error = %v, want ErrInvalidEvent", err)
		}
	})
}

func TestReadRequest_DetectsMode(t *testing.T) {
	e := newEvent(t)
	_, structured, err := WriteStructured(e)
	if err != nil {
		t.Fatal(err)
	}
	batch := []byte("[" + string(structured) + "," + string(structured) + "]")
	tests := []struct {
		name        string
		contentType string
		body        []byte
		binary      bool
		wantEvents  int
	}{
		{"structured", "application/cloudevents+json", structured, false, 1},
		{"structured, mixed case with parameter", "Application/CloudEvents+JSON; charset=UTF-8", structured, false, 1},
		{"batch", "application/cloudevents-batch+json", batch, false, 2},
		{"empty batch", "application/cloudevents-batch+json", []byte("[]"), false, 0},
		{"binary with JSON data", "application/json", []byte(`{"a":1}`), true, 1},
		{"binary without Content-Type", "", nil, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			if tt.binary {
				r.Header.Set("ce-specversion", "1.0")
				r.Header.Set("ce-id", "1")
				r.Header.Set("ce-source", "/s")
				r.Header.Set("ce-type", "t")
			}
			events, err := ReadRequest(r, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != tt.wantEvents {
				t.Fatalf("got %d events, want %d", len(events), tt.wantEvents)
			}
			if tt.binary {
				got := events[0]
				if got.DataContentType() != tt.contentType || string(got.Data()) != string(tt.body) {
					t.Errorf("binary event content type %q data %q", got.DataContentType(), got.Data())
				}
			}
		})
	}
}

func TestReadRequest_Rejects(t *testing.T) {
	binary := func(extra ...string) http.Header {
		h := http.Header{
			"Ce-Specversion": {"1.0"},
			"Ce-Id":          {"1"},
			"Ce-Source":      {"/s"},
			"Ce-Type":        {"t"},
		}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == "" {
				delete(h, http.CanonicalHeaderKey(extra[i]))
				continue
			}
			h.Add(extra[i], extra[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   error
	}{
		{"invalid UTF-8 in header", binary("ce-subject", "%C0%A0"), "", ErrMalformed},
		{"bare percent before invalid UTF-8", binary("ce-subject", "100%\xff"), "", ErrMalformed},
		{"missing specversion", binary("ce-specversion", ""), "", ErrMalformed},
		{"specversion 0.3", http.Header{"Ce-Specversion": {"0.3"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}}, "", ErrMalformed},
		{"missing id", binary("ce-id", ""), "", ErrMalformed},
		{"missing type", binary("ce-type", ""), "", ErrMalformed},
		{"ce-datacontenttype in binary mode", binary("ce-datacontenttype", "text/plain"), "", ErrMalformed},
		{"repeated header", binary("ce-type", "u"), "", ErrMalformed},
		{"extension name with dash", binary("ce-foo-bar", "x"), "", ErrMalformed},
		{"extension named data", binary("ce-data", "x"), "", ErrMalformed},
		{"malformed time", binary("ce-time", "yesterday"), "", ErrMalformed},
		{"time before year 1, which the protobuf format cannot hold", binary("ce-time", "0000-12-31T23:59:59Z"), "", ErrMalformed},
		{"structured time before year 1", http.Header{"Content-Type": {"application/cloudevents+json"}}, `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"0000-01-01T00:00:00Z"}`, ErrMalformed},
		{"structured invalid JSON", http.Header{"Content-Type": {"application/cloudevents+json"}}, "{", ErrMalformed},
		{"structured missing id", http.Header{"Content-Type": {"application/cloudevents+json"}}, `{"specversion":"1.0","source":"/s","type":"t"}`, ErrMalformed},
		{"structured invalid UTF-8", http.Header{"Content-Type": {"application/cloudevents+json"}}, "{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"/s\",\"type\":\"t\"}", ErrMalformed},
		{"structured upper-case extension", http.Header{"Content-Type": {"application/cloudevents+json"}}, `{"specversion":"1.0","id":"1","source":"/s","type":"t","Foo":"x"}`, ErrMalformed},
		{"batch not an array", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, `{}`, ErrMalformed},
		{"protobuf format", http.Header{"Content-Type": {"application/cloudevents+protobuf"}}, "x", ErrUnsupportedFormat},
		{"body too large", http.Header{"Content-Type": {"application/cloudevents+json"}}, strings.Repeat(" ", 101), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			r.Header = tt.header
			events, err := ReadRequest(r, 100)
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadRequest = %v, %v; want error %v", events, err, tt.want)
			}
		})
	}
}

func TestReadRequest_TooLargeWithoutContentLength(t *testing.T) {
	srv, results := serve(t)
	pr := strings.NewReader(strings.Repeat("x", 2<<20))
	req, err := http.NewRequest(http.MethodPost, srv.URL, struct{ *strings.Reader }{pr}) // hides the length: chunked
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := srv.Client().Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	if res := <-results; !errors.Is(res.err, ErrTooLarge) {
		t.Errorf("error = %v, want ErrTooLarge", res.err)
	}
}

func TestReadRequest_DecodesQuotedHeader(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header = http.Header{
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {"1"},
		"Ce-Source":      {"/s"},
		"Ce-Type":        {"t"},
		"Ce-Subject":     {`"Euro%20%e2%82%ac"`},
	}
	events, err := ReadRequest(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := events[0].Subject(); got != "Euro €" {
		t.Errorf("subject = %q", got)
	}
}

func BenchmarkWriteBinary(b *testing.B) {
	e := newEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		h := make(http.Header, 16)
		if _, err := WriteBinary(h, e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteStructured(b *testing.B) {
	e := newEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := WriteStructured(e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWriteBatch_ReadsBackAsABatch(t *testing.T) {
	a, b := event.New(), event.New()
	for i, e := range []*event.Event{&a, &b} {
		e.SetID(fmt.Sprint("id-", i))
		e.SetSource("/s")
		e.SetType("t")
		e.SetSubject("Euro € 😀")
	}
	ct, body, err := WriteBatch([]*event.Event{&a, &b})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	got, err := ReadRequest(req, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID() != "id-0" || got[1].ID() != "id-1" || got[1].Subject() != "Euro € 😀" {
		t.Errorf("read back %v", got)
	}
}
