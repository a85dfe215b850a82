// Package cehttp maps CloudEvents to and from HTTP messages per the
// CloudEvents HTTP binding.
//
// Binary mode carries the data in the body and every other attribute in a
// percent-encoded ce- header; structured mode carries the whole event as
// application/cloudevents+json. Only CloudEvents 1.0 is supported.
package cehttp

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Media types of the CloudEvents JSON formats.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
)

// Canonical header keys (as http.Header stores them) of the spec-defined
// attributes.
const (
	headerSpecVersion = "Ce-Specversion"
	headerID          = "Ce-Id"
	headerSource      = "Ce-Source"
	headerType        = "Ce-Type"
	headerSubject     = "Ce-Subject"
	headerTime        = "Ce-Time"
	headerDataSchema  = "Ce-Dataschema"
	headerContentType = "Content-Type"
)

// ErrInvalidEvent is returned (wrapped) when an event cannot be written
// because it is not a valid CloudEvents 1.0 event.
var ErrInvalidEvent = errors.New("cehttp: invalid event")

// context1 returns e's 1.0 context, or an error.
func context1(e *event.Event) (*event.EventContextV1, error) {
	if e == nil || e.Context == nil {
		return nil, fmt.Errorf("%w: no context", ErrInvalidEvent)
	}
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return nil, fmt.Errorf("%w: specversion %q is not supported", ErrInvalidEvent, e.Context.GetSpecVersion())
	}
	if ec.ID == "" || ec.Type == "" {
		return nil, fmt.Errorf("%w: id and type are required", ErrInvalidEvent)
	}
	return ec, nil
}

// WriteBinary writes e into h in binary mode and returns the body to send
// (e's data, not copied). Content-Type is datacontenttype, or for an event
// without one the type its data implies (see ImpliedContentType); every
// other attribute, extensions included, is a ce-<name> header holding the
// attribute's canonical string form, percent-encoded. Existing ce- headers
// in h are not removed.
//
// The body is empty when e has no data; the CloudEvents webhook spec
// requires a payload, so such events are sent in structured mode (see
// NeedsPayload).
func WriteBinary(h http.Header, e *event.Event) (body []byte, err error) {
	ec, err := context1(e)
	if err != nil {
		return nil, err
	}
	source := ec.Source.String()
	if source == "" {
		return nil, fmt.Errorf("%w: source is required", ErrInvalidEvent)
	}

	// One backing array for every single-value slice saves an allocation
	// per header.
	n := 5 + len(ec.Extensions)
	if ec.Subject != nil {
		n++
	}
	if ec.Time != nil {
		n++
	}
	if ec.DataSchema != nil {
		n++
	}
	vals := make([]string, 0, n)
	set := func(key, v string) {
		vals = append(vals, v)
		i := len(vals) - 1
		h[key] = vals[i : i+1 : i+1]
	}

	set(headerSpecVersion, event.CloudEventsVersionV1)
	set(headerID, EncodeHeaderValue(ec.ID))
	set(headerSource, EncodeHeaderValue(source))
	set(headerType, EncodeHeaderValue(ec.Type))
	if ec.DataContentType != nil {
		// Content-Type is an ordinary header, not percent-encoded; refuse
		// a value that would break the header block.
		if !validFieldValue(*ec.DataContentType) {
			return nil, fmt.Errorf("%w: datacontenttype %q is not a valid header value", ErrInvalidEvent, *ec.DataContentType)
		}
		set(headerContentType, *ec.DataContentType)
	} else {
		set(headerContentType, ImpliedContentType(e))
	}
	if ec.Subject != nil {
		set(headerSubject, EncodeHeaderValue(*ec.Subject))
	}
	if ec.Time != nil {
		set(headerTime, types.FormatTime(ec.Time.Time))
	}
	if ec.DataSchema != nil {
		set(headerDataSchema, EncodeHeaderValue(ec.DataSchema.String()))
	}
	for name, v := range ec.Extensions {
		key, err := extensionHeader(name)
		if err != nil {
			return nil, err
		}
		s, err := formatValue(v)
		if err != nil {
			return nil, fmt.Errorf("%w: extension %q: %v", ErrInvalidEvent, name, err)
		}
		set(key, EncodeHeaderValue(s))
	}
	return e.DataEncoded, nil
}

// formatValue returns the canonical string form of an attribute value.
func formatValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return types.FormatBool(v), nil
	case int32:
		return types.FormatInteger(v), nil
	case types.Timestamp:
		return types.FormatTime(v.Time), nil
	case time.Time:
		return types.FormatTime(v), nil
	}
	return types.Format(v)
}

// WriteStructured encodes e in structured mode: it returns the
// application/cloudevents+json content type and the JSON body (see
// MarshalJSON).
func WriteStructured(e *event.Event) (contentType string, body []byte, err error) {
	body, err = MarshalJSON(e)
	if err != nil {
		return "", nil, err
	}
	return ContentTypeStructured, body, nil
}

// checkExtensionName enforces the spec's naming rule, which sdk-go does
// not fully apply: lower-case a-z and 0-9 only, not a core attribute name,
// and never "data".
func checkExtensionName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty extension name", ErrInvalidEvent)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("%w: extension name %q must be lower-case a-z and 0-9", ErrInvalidEvent, name)
		}
	}
	switch name {
	case "data", "data_base64", "specversion", "id", "source", "type", "datacontenttype", "subject", "time", "dataschema":
		return fmt.Errorf("%w: %q cannot be an extension name", ErrInvalidEvent, name)
	}
	return nil
}

// extensionKeys caches canonical header keys of extension names, so that
// writing an event does not allocate one per extension. It stops growing
// at maxCachedKeys entries.
var (
	extensionKeys sync.Map // name -> "Ce-Name"
	cachedKeys    atomic.Int32
	maxCachedKeys = int32(1024)
)

// extensionHeader returns the canonical http.Header key for extension
// name ("Ce-" + name with its first letter upper-cased).
func extensionHeader(name string) (string, error) {
	if k, ok := extensionKeys.Load(name); ok {
		return k.(string), nil
	}
	if err := checkExtensionName(name); err != nil {
		return "", err
	}
	b := make([]byte, 0, 3+len(name))
	b = append(b, "Ce-"...)
	b = append(b, name...)
	if c := b[3]; 'a' <= c && c <= 'z' {
		b[3] = c - ('a' - 'A')
	}
	key := string(b)
	if cachedKeys.Load() < maxCachedKeys {
		if _, loaded := extensionKeys.LoadOrStore(name, key); !loaded {
			cachedKeys.Add(1)
		}
	}
	return key, nil
}

// validFieldValue reports whether v may be sent as-is as an HTTP header
// value: visible ASCII, space and tab, no leading or trailing whitespace.
func validFieldValue(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < ' ' && c != '\t') || c >= 0x7F {
			return false
		}
	}
	return v[0] != ' ' && v[0] != '\t' && v[len(v)-1] != ' ' && v[len(v)-1] != '\t'
}

// WriteBatch encodes events in batched mode: it returns the
// application/cloudevents-batch+json content type and a JSON array of the
// events in structured form.
func WriteBatch(events []*event.Event) (contentType string, body []byte, err error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range events {
		one, err := MarshalJSON(e)
		if err != nil {
			return "", nil, fmt.Errorf("event %d: %w", i, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(one)
	}
	b.WriteByte(']')
	return ContentTypeBatch, b.Bytes(), nil
}

// ImpliedContentType is the Content-Type a binary-mode request carries
// for e: its datacontenttype, or for an event without one what its data
// implies. The JSON event format treats an absent datacontenttype as
// application/json, so String data that is JSON is application/json;
// other String data is text/plain; charset=utf-8 and Binary data
// application/octet-stream.
func ImpliedContentType(e *event.Event) string {
	if ct := e.DataContentType(); ct != "" {
		return ct
	}
	switch {
	case e.DataBase64:
		return "application/octet-stream"
	case len(e.DataEncoded) == 0 || dataAsJSONValue(e.DataEncoded):
		return "application/json"
	case utf8.Valid(e.DataEncoded):
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// NeedsPayload reports whether e has no data to be a binary-mode body. The
// CloudEvents webhook spec (section 2.1) permits no request without a
// payload, so Herald sends such an event in structured mode, whose body
// is the event itself.
func NeedsPayload(e *event.Event) bool {
	return len(e.DataEncoded) == 0
}

// CheckEvent reports whether e can be written in every mode: what
// WriteBinary, WriteStructured and WriteBatch would refuse, without
// writing anything.
func CheckEvent(e *event.Event) error {
	ec, err := context1(e)
	if err != nil {
		return err
	}
	if ec.Source.String() == "" {
		return fmt.Errorf("%w: source is required", ErrInvalidEvent)
	}
	if ec.DataContentType != nil && !validFieldValue(*ec.DataContentType) {
		return fmt.Errorf("%w: datacontenttype %q is not a valid header value", ErrInvalidEvent, *ec.DataContentType)
	}
	for name, v := range ec.Extensions {
		if err := checkExtensionName(name); err != nil {
			return err
		}
		if _, err := formatValue(v); err != nil {
			return fmt.Errorf("%w: extension %q: %v", ErrInvalidEvent, name, err)
		}
	}
	return nil
}
