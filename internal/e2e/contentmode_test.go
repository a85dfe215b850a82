package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/cehttp/cehttptest"
	"github.com/heraldhq/herald/clients/cevent"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// matrixData are the kinds of data the content-mode matrix publishes.
var matrixData = []struct {
	name   string
	data   []byte // nil: no data
	binary bool   // only expressible as Binary (not UTF-8)
}{
	{"none", nil, false},
	{"jsonobject", []byte(`{"order":1,"items":["a","b"]}`), false},
	{"jsonstring", []byte(`"just a string"`), false},
	{"text", []byte("hello, <world> & friends € 😀\n"), false},
	{"bytes", []byte{0x00, 0xff, 0xfe, 0x80, 'a', 0xc0, 0xa0, '\n'}, true},
	{"empty", []byte{}, false},
}

var matrixContentTypes = []string{"", "application/json", "text/plain", "application/octet-stream",
	"application/vnd.example+json", "application/xml"}

// matrixCell is one published event of the matrix and what a receiver
// must decode.
type matrixCell struct {
	source string // grpc-binary, grpc-text, grpc-proto, http-binary, http-structured, http-batched
	proto  *cloudeventsv1.CloudEvent
	want   *event.Event
}

func matrixCells(t *testing.T) []matrixCell {
	var cells []matrixCell
	for _, src := range []string{"grpc-binary", "grpc-text", "grpc-proto", "http-binary", "http-structured", "http-batched"} {
		for _, dk := range matrixData {
			for ci, ct := range matrixContentTypes {
				if src == "grpc-text" && dk.binary || src == "grpc-proto" && (dk.data == nil || ct != "" && ci != 3) {
					continue // text_data is UTF-8; proto_data is Binary with its own content type
				}
				id := fmt.Sprintf("%s-%s-%d", src, dk.name, ci)
				want := event.New()
				want.SetID(id)
				want.SetSource("/matrix")
				want.SetType("com.example.matrix")
				want.SetSubject("subject-1")
				want.SetTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
				want.SetExtension("tenant", "acme")
				if src != "http-binary" {
					want.SetExtension("priority", int32(7))
					want.SetExtension("urgent", true)
				}
				if ct != "" {
					want.SetDataContentType(ct)
				}
				pe := &cloudeventsv1.CloudEvent{
					Id: id, Source: "/matrix", SpecVersion: "1.0", Type: "com.example.matrix",
					Attributes: map[string]*attrValue{
						"subject":  str("subject-1"),
						"tenant":   str("acme"),
						"time":     {Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: "2026-12-01T10:00:00Z"}},
						"priority": {Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: 7}},
						"urgent":   {Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeBoolean{CeBoolean: true}},
					},
				}
				if ct != "" {
					pe.Attributes["datacontenttype"] = str(ct)
				}
				if dk.data != nil {
					want.DataEncoded = slices.Clone(dk.data)
					switch src {
					case "grpc-binary":
						pe.Data = &cloudeventsv1.CloudEvent_BinaryData{BinaryData: dk.data}
						want.DataBase64 = true
					case "grpc-text":
						pe.Data = &cloudeventsv1.CloudEvent_TextData{TextData: string(dk.data)}
					case "grpc-proto":
						pe.Data = &cloudeventsv1.CloudEvent_ProtoData{ProtoData: &anypb.Any{
							TypeUrl: "https://schemas.example.com/example.Order", Value: dk.data}}
						want.DataBase64 = true
						want.SetDataSchema("https://schemas.example.com/example.Order")
						if ct == "" {
							want.SetDataContentType("application/protobuf")
						}
					case "http-structured", "http-batched":
						// Ingest keeps what the JSON says: data_base64 is Binary.
						want.DataBase64 = dk.binary
						body, err := cehttp.MarshalJSON(&want)
						if err != nil {
							t.Fatal(err)
						}
						parsed, err := cehttp.UnmarshalJSON(body)
						if err != nil {
							t.Fatal(err)
						}
						want.DataBase64 = parsed.DataBase64
					case "http-binary":
						// A binary-mode body is stored as text or Binary by
						// its content type (cevent.ToProto).
						stored, err := cevent.ToProto(want)
						if err != nil {
							t.Fatal(err)
						}
						_, isBinary := stored.GetData().(*cloudeventsv1.CloudEvent_BinaryData)
						want.DataBase64 = isBinary
					}
				}
				cells = append(cells, matrixCell{source: src, proto: pe, want: &want})
			}
		}
	}
	return cells
}

// TestContentModes_EveryAcceptedEventIsDeliveredInEveryMode publishes
// every kind of data with every content type from every source (gRPC
// binary_data, text_data and proto_data; HTTP ingest in binary,
// structured and batched mode) to a binary, a structured and a batched
// subscription. Every delivery is sent (none dead on encoding), with a
// Content-Type and a body, a JSON body is valid JSON, the signature
// verifies over the exact bytes, and Herald's reader and sdk-go's both
// decode the event that was published.
func TestContentModes_EveryAcceptedEventIsDeliveredInEveryMode(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	modes := map[string]heraldv1.ContentMode{
		"binary":     heraldv1.ContentMode_CONTENT_MODE_BINARY,
		"structured": heraldv1.ContentMode_CONTENT_MODE_STRUCTURED,
		"batched":    heraldv1.ContentMode_CONTENT_MODE_BATCHED,
	}
	rcvs := map[string]*heraldtest.Receiver{}
	secrets := map[string]string{}
	subs := map[string]string{}
	for name, mode := range modes {
		rcvs[name] = heraldtest.NewReceiver(t, nil)
		sub := createSub(t, n, rcvs[name].URL, func(s *heraldv1.Subscription) {
			s.Types = []string{"com.example.matrix"}
			s.ContentMode = mode
			s.MaxBatchSize = 7
		})
		secrets[name], subs[name] = sub.GetSigningSecret(), sub.GetId()
	}

	cells := matrixCells(t)
	byID := map[string]matrixCell{}
	var grpcEvents []*cloudeventsv1.CloudEvent
	var batch [][]byte
	for _, c := range cells {
		byID[c.proto.GetId()] = c
		switch c.source {
		case "grpc-binary", "grpc-text", "grpc-proto":
			grpcEvents = append(grpcEvents, c.proto)
		case "http-binary":
			h := http.Header{}
			body, err := cehttp.WriteBinary(h, c.want)
			if err != nil {
				t.Fatal(err)
			}
			if c.want.DataContentType() == "" {
				h.Del("Content-Type") // as a sender with no datacontenttype sends it
			}
			ingest(t, n, h, body)
		case "http-structured", "http-batched":
			body, err := cehttp.MarshalJSON(c.want)
			if err != nil {
				t.Fatal(err)
			}
			if c.source == "http-batched" {
				batch = append(batch, body)
				continue
			}
			ingest(t, n, http.Header{"Content-Type": {cehttp.ContentTypeStructured}}, body)
		}
	}
	for chunk := range slices.Chunk(grpcEvents, 50) {
		for _, r := range publish(t, n, chunk...) {
			if r.GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_ACCEPTED || len(r.GetDeliveryIds()) != 3 {
				t.Fatalf("publish %s: %v", r.GetId(), r)
			}
		}
	}
	ingest(t, n, http.Header{"Content-Type": {cehttp.ContentTypeBatch}},
		append(append([]byte("[\n  "), bytes.Join(batch, []byte(",\n  "))...), "\n]"...))

	for name, rcv := range rcvs {
		seen := map[string]int{}
		heraldtest.Eventually(t, wait, name+" receiving every event", func() bool {
			total := 0
			for _, r := range rcv.Requests() {
				if cehttptest.Mode(r.Header.Get("Content-Type")) == "batched" {
					total += strings.Count(string(r.Body), `"specversion"`)
				} else {
					total++
				}
			}
			return total >= len(cells)
		})
		wh, err := standardwebhooks.NewWebhook(secrets[name])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rcv.Requests() {
			ct := r.Header.Get("Content-Type")
			mode := cehttptest.Mode(ct)
			if ct == "" {
				t.Errorf("%s: a request without Content-Type", name)
			}
			if len(r.Body) == 0 {
				t.Errorf("%s: a request without a payload (%v)", name, r.Header)
			}
			if mode != "binary" && !json.Valid(r.Body) {
				t.Errorf("%s: %s body is not valid JSON: %q", name, mode, r.Body)
			}
			if err := wh.Verify(r.Body, r.Header); err != nil {
				t.Errorf("%s: signature does not verify: %v", name, err)
			}
			if mode == "binary" && name != "binary" || mode == "batched" && name != "batched" {
				t.Errorf("%s subscription got a %s request", name, mode)
			}
			req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(r.Body))
			req.Header = r.Header
			got, err := cehttp.ReadRequest(req, 0)
			if err != nil {
				t.Errorf("%s: Herald's reader refuses %q: %v", name, r.Body, err)
				continue
			}
			for i := range got {
				c, ok := byID[got[i].ID()]
				if !ok {
					t.Errorf("%s: unknown event %q", name, got[i].ID())
					continue
				}
				seen[c.proto.GetId()]++
				cehttptest.SameEvent(t, mode+" "+c.proto.GetId(), got[i], c.want)
			}
			for _, e := range cehttptest.ReadWithSDK(t, mode, r.Header, r.Body) {
				cehttptest.SameEvent(t, mode+" (sdk-go) "+e.ID(), e, byID[e.ID()].want)
			}
		}
		t.Logf("%s: %d requests carried the %d events", name, len(rcv.Requests()), len(seen))
		for id := range byID {
			if seen[id] != 1 {
				t.Errorf("%s: event %s received %d times, want once", name, id, seen[id])
			}
		}
		dead, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{
			SubscriptionId: subs[name], State: heraldv1.DeliveryState_DELIVERY_STATE_DEAD})
		if err != nil {
			t.Fatal(err)
		}
		if len(dead.GetDeliveries()) > 0 {
			t.Errorf("%s: %d deliveries dead, first: %v", name, len(dead.GetDeliveries()), dead.GetDeliveries()[0])
		}
	}
}

// ingest POSTs one request to the node's HTTP edge and requires a 200.
func ingest(t *testing.T, n *testNode, h http.Header, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+n.HTTPAddr()+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest %v %q = %d %s", h, body, resp.StatusCode, b)
	}
}
