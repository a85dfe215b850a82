package cevent

import (
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
)

func TestFromProto_MapsEveryAttributeType(t *testing.T) {
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	pe := &cloudeventsv1.CloudEvent{
		Id: "1", Source: "/s", SpecVersion: "1.0", Type: "t",
		Attributes: map[string]*attrValue{
			"datacontenttype": stringAttr("application/json"),
			"subject":         stringAttr("Euro € 😀"),
			"time":            {Attr: &attrValue_CeTimestamp{CeTimestamp: timestamppb.New(ts)}},
			"dataschema":      {Attr: &attrValue_CeUri{CeUri: "https://example.com/schema"}},
			"flag":            {Attr: &attrValue_CeBoolean{CeBoolean: true}},
			"count":           {Attr: &attrValue_CeInteger{CeInteger: -7}},
			"blob":            {Attr: &attrValue_CeBytes{CeBytes: []byte{1, 2}}},
			"ref":             {Attr: &attrValue_CeUriRef{CeUriRef: "/a/b"}},
		},
		Data: &cloudeventsv1.CloudEvent_TextData{TextData: `{"a":1}`},
	}
	e, err := FromProto(pe)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.ID() != "1" || e.Source() != "/s" || e.Type() != "t" || e.SpecVersion() != "1.0" ||
		e.DataContentType() != "application/json" || e.Subject() != "Euro € 😀" || !e.Time().Equal(ts) ||
		e.DataSchema() != "https://example.com/schema" || string(e.Data()) != `{"a":1}` {
		t.Errorf("context = %v", e)
	}
	ext := e.Extensions()
	if ext["flag"] != true || ext["count"] != int32(-7) || string(ext["blob"].([]byte)) != "\x01\x02" {
		t.Errorf("extensions = %#v", ext)
	}
	if ref, ok := ext["ref"].(types.URIRef); !ok || ref.String() != "/a/b" {
		t.Errorf("ref = %#v", ext["ref"])
	}

	back, err := ToProto(e)
	if err != nil {
		t.Fatal(err)
	}
	again, err := FromProto(back)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := e.MarshalJSON()
	b2, _ := again.MarshalJSON()
	if string(b1) != string(b2) {
		t.Errorf("round trip changed the event:\n%s\n%s", b1, b2)
	}
}

func TestFromProto_RejectsWrongTypes(t *testing.T) {
	for name, v := range map[string]*attrValue{
		"datacontenttype": {Attr: &attrValue_CeBoolean{CeBoolean: true}},
		"time":            {Attr: &attrValue_CeInteger{CeInteger: 1}},
		"dataschema":      {Attr: &attrValue_CeUri{CeUri: "not absolute"}},
		"ext":             {},
	} {
		pe := &cloudeventsv1.CloudEvent{Id: "1", Source: "/s", SpecVersion: "1.0", Type: "t",
			Attributes: map[string]*attrValue{name: v}}
		if _, err := FromProto(pe); err == nil {
			t.Errorf("%s = %v: no error", name, v)
		}
	}
}

func TestToProto_BinaryDataStaysBinary(t *testing.T) {
	e := event.New()
	e.SetID("1")
	e.SetSource("/s")
	e.SetType("t")
	if err := e.SetData("application/octet-stream", []byte{0, 255}); err != nil {
		t.Fatal(err)
	}
	pe, err := ToProto(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pe.GetData().(*cloudeventsv1.CloudEvent_BinaryData); !ok {
		t.Errorf("data = %T, want binary_data", pe.GetData())
	}
	if !proto.Equal(pe, mustRoundTrip(t, pe)) {
		t.Error("proto -> event -> proto changed the event")
	}
}

func mustRoundTrip(t *testing.T, pe *cloudeventsv1.CloudEvent) *cloudeventsv1.CloudEvent {
	e, err := FromProto(pe)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ToProto(e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestToProto_RefusesATimeTheFormatCannotHold: a time before year 1 has
// no protobuf Timestamp, as the time attribute or as an extension; the
// conversion fails rather than store what cannot be read back.
func TestToProto_RefusesATimeTheFormatCannotHold(t *testing.T) {
	year0 := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	e := event.New()
	e.SetID("1")
	e.SetSource("/s")
	e.SetType("t")
	e.SetTime(year0)
	if _, err := ToProto(e); err == nil {
		t.Error("ToProto of an event of year 0: no error")
	}
	e.SetTime(time.Time{})
	e.SetExtension("when", year0)
	if _, err := ToProto(e); err == nil {
		t.Error("ToProto of an extension of year 0: no error")
	}
}
