package publish

import (
	"strings"
	"testing"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/policy"
)

type attr = cloudeventsv1.CloudEvent_CloudEventAttributeValue

func sattr(s string) *attr {
	return &attr{Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: s}}
}

func TestValidate(t *testing.T) {
	valid := func() *cloudeventsv1.CloudEvent {
		return &cloudeventsv1.CloudEvent{Id: "1", Source: "/s", SpecVersion: "1.0", Type: "t",
			Attributes: map[string]*attr{"tenant": sattr("x")}}
	}
	tests := []struct {
		name  string
		edit  func(*cloudeventsv1.CloudEvent)
		field string // "" = valid
	}{
		{"valid", func(*cloudeventsv1.CloudEvent) {}, ""},
		{"digits in extension", func(e *cloudeventsv1.CloudEvent) { e.Attributes["v2"] = sattr("x") }, ""},
		{"missing id", func(e *cloudeventsv1.CloudEvent) { e.Id = "" }, "e.id"},
		{"missing source", func(e *cloudeventsv1.CloudEvent) { e.Source = "" }, "e.source"},
		{"bad source", func(e *cloudeventsv1.CloudEvent) { e.Source = "http://[::1" }, "e.source"},
		{"missing type", func(e *cloudeventsv1.CloudEvent) { e.Type = "" }, "e.type"},
		{"missing specversion", func(e *cloudeventsv1.CloudEvent) { e.SpecVersion = "" }, "e.spec_version"},
		{"uppercase name", func(e *cloudeventsv1.CloudEvent) { e.Attributes["Tenant"] = sattr("x") }, "e.attributes[Tenant]"},
		{"dash in name", func(e *cloudeventsv1.CloudEvent) { e.Attributes["my-ext"] = sattr("x") }, "e.attributes[my-ext]"},
		{"data as name", func(e *cloudeventsv1.CloudEvent) { e.Attributes["data"] = sattr("x") }, "e.attributes[data]"},
		{"id as attribute", func(e *cloudeventsv1.CloudEvent) { e.Attributes["id"] = sattr("x") }, "e.attributes[id]"},
		{"empty value", func(e *cloudeventsv1.CloudEvent) { e.Attributes["x"] = &attr{} }, "e.attributes[x]"},
		{"time not a timestamp", func(e *cloudeventsv1.CloudEvent) { e.Attributes["time"] = sattr("soon") }, "e"},
		{"oversized", func(e *cloudeventsv1.CloudEvent) {
			e.Data = &cloudeventsv1.CloudEvent_BinaryData{BinaryData: make([]byte, policy.MaxEventSize)}
		}, "e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := valid()
			tt.edit(e)
			_, vs := Validate("e", e, policy.MaxEventSize)
			if tt.field == "" {
				if len(vs) != 0 {
					t.Fatalf("violations = %v, want none", vs)
				}
				return
			}
			if len(vs) != 1 || vs[0].Field != tt.field || vs[0].Description == "" {
				t.Fatalf("violations = %v, want one on %s", vs, tt.field)
			}
			if tt.name == "oversized" && !strings.Contains(vs[0].Description, "limit") {
				t.Errorf("description %q does not state the limit", vs[0].Description)
			}
		})
	}
}
