package cehttp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// This file is the CloudEvents JSON event format (formats/json-format.md),
// written and read by Herald itself rather than by sdk-go's
// event.Event.MarshalJSON and UnmarshalJSON: sdk-go writes binary data as
// raw bytes inside a JSON string, fails on non-JSON data without a
// datacontenttype, and mis-reads data_base64 that comes before
// datacontenttype when the JSON has spaces after its colons.
//
// Herald's runtime type of data follows event.Event.DataBase64: true means
// Binary (protobuf binary_data, JSON data_base64), false means a String
// (protobuf text_data, JSON data, an HTTP body).

// IsJSONContentType reports whether a datacontenttype declares JSON data:
// a media type of the form */json or */*+json, parameters aside. An empty
// content type is JSON too: the JSON format implies application/json.
func IsJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	_, sub, ok := strings.Cut(mt, "/")
	return ok && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// dataAsJSONValue reports whether data can be the JSON value of the data
// member as it is: valid JSON with nothing around it that a reader would
// drop, so the bytes a receiver reads back are the bytes sent.
func dataAsJSONValue(data []byte) bool {
	if len(data) == 0 || !json.Valid(data) {
		return false
	}
	return !isJSONSpace(data[0]) && !isJSONSpace(data[len(data)-1])
}

func isJSONSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// MarshalJSON encodes e in the JSON event format. Data is written so that
// a reader gets the same bytes back:
//   - Binary data (e.DataBase64) is data_base64;
//   - with a JSON content type (or none), data that is a JSON value is the
//     data member as it is; any other data is data_base64;
//   - with any other content type, UTF-8 text is the data member as a JSON
//     string, and anything else data_base64.
//
// Extensions are written in name order, so the output is deterministic.
func MarshalJSON(e *event.Event) ([]byte, error) {
	ec, err := context1(e)
	if err != nil {
		return nil, err
	}
	source := ec.Source.String()
	if source == "" {
		return nil, fmt.Errorf("%w: source is required", ErrInvalidEvent)
	}
	b := make([]byte, 0, 256+len(e.DataEncoded)*4/3)
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendString(b, ec.ID)
	b = append(b, `,"source":`...)
	b = appendString(b, source)
	b = append(b, `,"type":`...)
	b = appendString(b, ec.Type)
	ct := ""
	if ec.DataContentType != nil {
		ct = *ec.DataContentType
		b = append(b, `,"datacontenttype":`...)
		b = appendString(b, ct)
	}
	if ec.DataSchema != nil {
		b = append(b, `,"dataschema":`...)
		b = appendString(b, ec.DataSchema.String())
	}
	if ec.Subject != nil {
		b = append(b, `,"subject":`...)
		b = appendString(b, *ec.Subject)
	}
	if ec.Time != nil {
		b = append(b, `,"time":`...)
		b = appendString(b, types.FormatTime(ec.Time.Time))
	}
	if len(ec.Extensions) > 0 {
		names := make([]string, 0, len(ec.Extensions))
		for name := range ec.Extensions {
			if err := checkExtensionName(name); err != nil {
				return nil, err
			}
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			b = append(b, ',')
			b = appendString(b, name)
			b = append(b, ':')
			if b, err = appendAttrValue(b, ec.Extensions[name]); err != nil {
				return nil, fmt.Errorf("%w: extension %q: %v", ErrInvalidEvent, name, err)
			}
		}
	}
	if data := e.DataEncoded; data != nil {
		switch {
		case !e.DataBase64 && IsJSONContentType(ct) && dataAsJSONValue(data):
			b = append(b, `,"data":`...)
			b = append(b, data...)
		case !e.DataBase64 && !IsJSONContentType(ct) && utf8.Valid(data):
			b = append(b, `,"data":`...)
			b = appendString(b, string(data))
		default:
			b = append(b, `,"data_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, data)
			b = append(b, '"')
		}
	}
	return append(b, '}'), nil
}

// appendAttrValue appends an attribute value as the JSON format maps its
// CloudEvents type: Boolean and Integer as JSON literals, everything else
// as its canonical string.
func appendAttrValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case bool:
		if v {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case int32:
		return fmt.Appendf(b, "%d", v), nil
	}
	s, err := formatValue(v)
	if err != nil {
		return b, err
	}
	return appendString(b, s), nil
}

// appendString appends s as a JSON string. Unlike encoding/json it leaves
// <, > and & as they are; invalid UTF-8 becomes U+FFFD, as there.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			if r == '\u2028' || r == '\u2029' {
				b = append(b, s[start:i]...)
				b = fmt.Appendf(b, `\u%04x`, r)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			b = fmt.Appendf(b, `\u%04x`, c)
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// UnmarshalJSON decodes one event in the JSON event format, whatever the
// order of its members and the whitespace between them. It applies the
// format's rules: attribute names are lower-case, data and data_base64
// exclude each other, data_base64 is Binary data, data with a JSON content
// type (or none) is the JSON value's bytes and with any other content type
// must be a string. A null attribute is an absent one. The event is
// validated (see ReadRequest).
func UnmarshalJSON(m []byte) (event.Event, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(m, &members); err != nil {
		return event.Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if members == nil {
		return event.Event{}, fmt.Errorf("%w: an event must be a JSON object", ErrMalformed)
	}
	e := event.New(event.CloudEventsVersionV1)
	str := func(name string, raw json.RawMessage) (string, error) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: %s must be a string", ErrMalformed, name)
		}
		return s, nil
	}
	var data, data64 json.RawMessage
	sawVersion := false
	for name, raw := range members {
		if name != strings.ToLower(name) {
			return event.Event{}, fmt.Errorf("%w: attribute name %q is not lower-case", ErrMalformed, name)
		}
		if isNull(raw) {
			if name == "data" {
				data = raw // an explicit null payload
			}
			continue
		}
		switch name {
		case "data":
			data = raw
			continue
		case "data_base64":
			data64 = raw
			continue
		}
		var err error
		var s string
		switch name {
		case "specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time":
			if s, err = str(name, raw); err != nil {
				return event.Event{}, err
			}
		}
		switch name {
		case "specversion":
			if s != event.CloudEventsVersionV1 {
				return event.Event{}, fmt.Errorf("%w: specversion %q is not supported", ErrMalformed, s)
			}
			sawVersion = true
		case "id":
			e.SetID(s)
		case "source":
			e.SetSource(s)
		case "type":
			e.SetType(s)
		case "datacontenttype":
			e.SetDataContentType(s)
		case "dataschema":
			e.SetDataSchema(s)
		case "subject":
			e.SetSubject(s)
		case "time":
			t, err := parseTime(s)
			if err != nil {
				return event.Event{}, fmt.Errorf("%w: time: %v", ErrMalformed, err)
			}
			e.SetTime(t)
		default:
			v, err := extensionValue(raw)
			if err != nil {
				return event.Event{}, fmt.Errorf("%w: extension %q: %v", ErrMalformed, name, err)
			}
			if err := checkExtensionName(name); err != nil {
				return event.Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			e.SetExtension(name, v)
		}
	}
	if !sawVersion {
		return event.Event{}, fmt.Errorf("%w: specversion is required", ErrMalformed)
	}
	switch {
	case data != nil && data64 != nil:
		return event.Event{}, fmt.Errorf("%w: data and data_base64 exclude each other", ErrMalformed)
	case data64 != nil:
		s, err := str("data_base64", data64)
		if err != nil {
			return event.Event{}, err
		}
		b, err := decodeBase64(s)
		if err != nil {
			return event.Event{}, fmt.Errorf("%w: data_base64: %v", ErrMalformed, err)
		}
		e.DataEncoded, e.DataBase64 = b, true
	case data != nil:
		if IsJSONContentType(e.DataContentType()) {
			e.DataEncoded = bytes.Clone(data)
			break
		}
		s, err := str("data (its datacontenttype is not JSON)", data)
		if err != nil {
			return event.Event{}, err
		}
		e.DataEncoded = []byte(s)
	}
	if err := validate(&e); err != nil {
		return event.Event{}, err
	}
	return e, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// decodeBase64 decodes standard base64, padded or not, ignoring line
// breaks (RFC 2045 style wrapping is common).
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	}
	if len(s)%4 != 0 {
		return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	return base64.StdEncoding.DecodeString(s)
}

// extensionValue maps a JSON extension value to its CloudEvents type:
// a string is a String, true and false a Boolean, an integral number in
// the 32-bit range an Integer. Objects, arrays and other numbers are not
// CloudEvents attribute values.
func extensionValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return nil, fmt.Errorf("no value")
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return s, nil
	case string(raw) == "true":
		return true, nil
	case string(raw) == "false":
		return false, nil
	case raw[0] == '-' || ('0' <= raw[0] && raw[0] <= '9'):
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, err
		}
		if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
			return nil, fmt.Errorf("%s is not an integer in the 32-bit range", raw)
		}
		return int32(f), nil
	}
	return nil, fmt.Errorf("must be a string, a boolean or an integer")
}
