// Package cehttptest checks CloudEvents HTTP requests in tests: the content
// mode a request uses, its events as Herald's reader and sdk-go's decode
// them, and whether a decoded event is the one that was sent.
package cehttptest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	sdkhttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/heraldhq/herald/clients/cehttp"
)

// Mode is the CloudEvents HTTP content mode of a request with content type
// ct: "batched", "structured" or "binary".
func Mode(ct string) string {
	switch {
	case strings.HasPrefix(ct, cehttp.ContentTypeBatch):
		return "batched"
	case strings.HasPrefix(ct, cehttp.ContentTypeStructured):
		return "structured"
	}
	return "binary"
}

// SameEvent checks what a receiver decoded with what was sent. The
// binary mode carries every extension as a string and an absent
// datacontenttype as the implied one.
func SameEvent(t testing.TB, mode string, got event.Event, want *event.Event) {
	t.Helper()
	if got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() ||
		got.Subject() != want.Subject() || !got.Time().Equal(want.Time()) || got.DataSchema() != want.DataSchema() {
		t.Errorf("%s: attributes differ:\n got %s\nwant %s", mode, got.String(), want.String())
	}
	wantCT := want.DataContentType()
	binaryMode := strings.HasPrefix(mode, "binary")
	if binaryMode {
		wantCT = cehttp.ImpliedContentType(want)
	}
	if got.DataContentType() != wantCT {
		t.Errorf("%s: datacontenttype %q, want %q", mode, got.DataContentType(), wantCT)
	}
	if len(got.Extensions()) != len(want.Extensions()) {
		t.Errorf("%s: extensions %v, want %v", mode, got.Extensions(), want.Extensions())
	}
	for name, wv := range want.Extensions() {
		gv := got.Extensions()[name]
		gs, _ := types.Format(gv)
		ws, _ := types.Format(wv)
		if gs != ws {
			t.Errorf("%s: extension %s = %v, want %v", mode, name, gv, wv)
		}
		if !binaryMode {
			if _, isBool := wv.(bool); isBool {
				if _, ok := gv.(bool); !ok {
					t.Errorf("%s: extension %s is %T, want a boolean", mode, name, gv)
				}
			}
			if _, isInt := wv.(int32); isInt {
				if _, ok := gv.(int32); !ok {
					t.Errorf("%s: extension %s is %T, want an integer", mode, name, gv)
				}
			}
		}
	}
	if !bytes.Equal(got.Data(), want.Data()) {
		t.Errorf("%s: data %q, want %q", mode, got.Data(), want.Data())
	}
}

// ReadWithSDK decodes a request with sdk-go's HTTP binding. sdk-go v2.16.2
// takes only a short list of media types as JSON (application/json,
// text/json and the CloudEvents ones, not */*+json): in a JSON format it
// refuses a +json event's JSON data, or unquotes its JSON string. Those
// requests are not read with it (docs/api.md says so).
func ReadWithSDK(t testing.TB, mode string, h http.Header, body []byte) []event.Event {
	t.Helper()
	if mode != "binary" && SDKMisreadsJSON(body) {
		return nil
	}
	r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	r.Header = h.Clone()
	if mode == "batched" {
		events, err := sdkhttp.NewEventsFromHTTPRequest(r)
		if err != nil {
			t.Fatalf("sdk-go batch: %v", err)
		}
		return events
	}
	msg := sdkhttp.NewMessageFromHttpRequest(r)
	e, err := binding.ToEvent(t.Context(), msg)
	if err != nil {
		t.Fatalf("%s: sdk-go: %v (body %q)", mode, err, body)
	}
	return []event.Event{*e}
}

// SDKMisreadsJSON reports whether a JSON-format body holds an event whose
// content type is JSON by the spec but not by sdk-go, with data as JSON.
func SDKMisreadsJSON(body []byte) bool {
	var events []map[string]json.RawMessage
	if json.Unmarshal(body, &events) != nil {
		var one map[string]json.RawMessage
		if json.Unmarshal(body, &one) != nil {
			return false
		}
		events = append(events, one)
	}
	for _, m := range events {
		var ct string
		_ = json.Unmarshal(m["datacontenttype"], &ct)
		mt, _, _ := strings.Cut(ct, ";")
		switch strings.TrimSpace(mt) {
		case "", "application/json", "text/json":
			continue
		}
		if _, hasData := m["data"]; hasData && cehttp.IsJSONContentType(ct) {
			return true
		}
	}
	return false
}
