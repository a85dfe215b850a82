// Package cevent converts CloudEvents between the protobuf format that
// Herald's API and store use and sdk-go's event.Event that the rest of
// Herald works with.
package cevent

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"google.golang.org/protobuf/types/known/timestamppb"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
)

// Attribute names with a meaning of their own in CloudEvents 1.0.
const (
	attrDataContentType = "datacontenttype"
	attrDataSchema      = "dataschema"
	attrSubject         = "subject"
	attrTime            = "time"
)

type attrValue = cloudeventsv1.CloudEvent_CloudEventAttributeValue

// FromProto converts a protobuf CloudEvent to an event.Event. It does not
// validate the event beyond what the conversion needs.
func FromProto(pe *cloudeventsv1.CloudEvent) (event.Event, error) {
	e := event.New(pe.GetSpecVersion())
	e.SetID(pe.GetId())
	e.SetSource(pe.GetSource())
	e.SetType(pe.GetType())
	for name, v := range pe.GetAttributes() {
		val, err := attrToValue(v)
		if err != nil {
			return e, fmt.Errorf("attribute %s: %w", name, err)
		}
		switch name {
		case attrDataContentType:
			s, ok := val.(string)
			if !ok {
				return e, fmt.Errorf("attribute %s: must be a string", name)
			}
			e.SetDataContentType(s)
		case attrDataSchema:
			var schema string
			switch u := val.(type) {
			case types.URI:
				schema = u.String()
			case string: // ce_string is common in the wild; accept a URI in it
				if p := types.ParseURI(u); p == nil || !p.IsAbs() {
					return e, fmt.Errorf("attribute %s: must be an absolute URI", name)
				}
				schema = u
			default:
				return e, fmt.Errorf("attribute %s: must be a URI", name)
			}
			e.SetDataSchema(schema)
		case attrSubject:
			s, ok := val.(string)
			if !ok {
				return e, fmt.Errorf("attribute %s: must be a string", name)
			}
			e.SetSubject(s)
		case attrTime:
			t, err := types.ToTime(val)
			if err != nil {
				return e, fmt.Errorf("attribute %s: %w", name, err)
			}
			e.SetTime(t)
		default:
			if err := e.Context.SetExtension(name, val); err != nil {
				return e, fmt.Errorf("attribute %s: %w", name, err)
			}
		}
	}
	// DataBase64 marks Binary data (as sdk-go's JSON format does), so the
	// JSON event format writes it as data_base64.
	switch d := pe.GetData().(type) {
	case *cloudeventsv1.CloudEvent_BinaryData:
		e.DataEncoded, e.DataBase64 = nonNil(d.BinaryData), true
	case *cloudeventsv1.CloudEvent_TextData:
		e.DataEncoded = []byte(d.TextData)
	case *cloudeventsv1.CloudEvent_ProtoData:
		e.DataEncoded, e.DataBase64 = nonNil(d.ProtoData.GetValue()), true
		if e.DataContentType() == "" {
			e.SetDataContentType("application/protobuf")
		}
		if e.DataSchema() == "" && d.ProtoData.GetTypeUrl() != "" {
			e.SetDataSchema(d.ProtoData.GetTypeUrl())
		}
	}
	return e, nil
}

func attrToValue(v *attrValue) (any, error) {
	switch a := v.GetAttr().(type) {
	case *attrValue_CeBoolean:
		return a.CeBoolean, nil
	case *attrValue_CeInteger:
		return a.CeInteger, nil
	case *attrValue_CeString:
		return a.CeString, nil
	case *attrValue_CeBytes:
		return a.CeBytes, nil
	case *attrValue_CeUri:
		u := types.ParseURI(a.CeUri)
		if u == nil || !u.IsAbs() {
			return nil, fmt.Errorf("invalid URI %q", a.CeUri)
		}
		return *u, nil
	case *attrValue_CeUriRef:
		u := types.ParseURIRef(a.CeUriRef)
		if u == nil {
			return nil, fmt.Errorf("invalid URI-reference %q", a.CeUriRef)
		}
		return *u, nil
	case *attrValue_CeTimestamp:
		if err := a.CeTimestamp.CheckValid(); err != nil {
			return nil, err
		}
		return types.Timestamp{Time: a.CeTimestamp.AsTime()}, nil
	default:
		return nil, fmt.Errorf("no value")
	}
}

type (
	attrValue_CeBoolean   = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeBoolean
	attrValue_CeInteger   = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeInteger
	attrValue_CeString    = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString
	attrValue_CeBytes     = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeBytes
	attrValue_CeUri       = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeUri
	attrValue_CeUriRef    = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeUriRef
	attrValue_CeTimestamp = cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeTimestamp
)

// nonNil keeps empty data apart from no data.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ToProto converts an event.Event to the protobuf format. Binary data
// (e.DataBase64, as from JSON data_base64) becomes binary_data. Other data
// becomes text_data when it is valid UTF-8 and its content type is text,
// JSON or XML, or when it has no content type and is JSON (which the JSON
// format then implies); anything else is binary_data.
func ToProto(e event.Event) (*cloudeventsv1.CloudEvent, error) {
	pe := &cloudeventsv1.CloudEvent{
		Id:          e.ID(),
		Source:      e.Source(),
		SpecVersion: e.SpecVersion(),
		Type:        e.Type(),
		Attributes:  map[string]*attrValue{},
	}
	if v := e.DataContentType(); v != "" {
		pe.Attributes[attrDataContentType] = stringAttr(v)
	}
	if v := e.DataSchema(); v != "" {
		pe.Attributes[attrDataSchema] = &attrValue{Attr: &attrValue_CeUri{CeUri: v}}
	}
	if v := e.Subject(); v != "" {
		pe.Attributes[attrSubject] = stringAttr(v)
	}
	if t := e.Time(); !t.IsZero() {
		a, err := timeAttr(t)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", attrTime, err)
		}
		pe.Attributes[attrTime] = a
	}
	for name, v := range e.Extensions() {
		a, err := valueToAttr(v)
		if err != nil {
			return nil, fmt.Errorf("extension %s: %w", name, err)
		}
		pe.Attributes[name] = a
	}
	if len(pe.Attributes) == 0 {
		pe.Attributes = nil
	}
	if data := e.Data(); data != nil {
		ct := e.DataContentType()
		text := !e.DataBase64 && utf8.Valid(data) && (IsText(ct) || ct == "" && json.Valid(data))
		if text {
			pe.Data = &cloudeventsv1.CloudEvent_TextData{TextData: string(data)}
		} else {
			pe.Data = &cloudeventsv1.CloudEvent_BinaryData{BinaryData: data}
		}
	}
	return pe, nil
}

// timeAttr is t as a timestamp attribute, or an error when the protobuf
// format cannot hold it (before year 1 or after year 9999).
func timeAttr(t time.Time) (*attrValue, error) {
	ts := timestamppb.New(t)
	if err := ts.CheckValid(); err != nil {
		return nil, err
	}
	return &attrValue{Attr: &attrValue_CeTimestamp{CeTimestamp: ts}}, nil
}

func stringAttr(s string) *attrValue {
	return &attrValue{Attr: &attrValue_CeString{CeString: s}}
}

func valueToAttr(v any) (*attrValue, error) {
	v, err := types.Validate(v)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case bool:
		return &attrValue{Attr: &attrValue_CeBoolean{CeBoolean: x}}, nil
	case int32:
		return &attrValue{Attr: &attrValue_CeInteger{CeInteger: x}}, nil
	case string:
		return stringAttr(x), nil
	case []byte:
		return &attrValue{Attr: &attrValue_CeBytes{CeBytes: x}}, nil
	case types.URI:
		return &attrValue{Attr: &attrValue_CeUri{CeUri: x.String()}}, nil
	case types.URIRef:
		return &attrValue{Attr: &attrValue_CeUriRef{CeUriRef: x.String()}}, nil
	case types.Timestamp:
		return timeAttr(x.Time)
	case time.Time:
		return timeAttr(x)
	default:
		return nil, fmt.Errorf("unsupported type %T", v)
	}
}

// IsText reports whether a content type carries text: text/*, JSON or XML.
func IsText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") ||
		mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		mt == "application/xml" || strings.HasSuffix(mt, "+xml")
}
