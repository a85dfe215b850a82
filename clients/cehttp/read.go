package cehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Errors returned (wrapped) by ReadRequest.
var (
	// ErrMalformed means the request is not a valid CloudEvents HTTP
	// message: answer 400.
	ErrMalformed = errors.New("cehttp: malformed CloudEvents message")
	// ErrUnsupportedFormat means a structured or batched request used an
	// event format other than JSON: answer 415.
	ErrUnsupportedFormat = errors.New("cehttp: unsupported event format")
	// ErrTooLarge means the body is larger than the limit: answer 413.
	ErrTooLarge = errors.New("cehttp: body too large")
)

// ReadRequest reads the CloudEvents in r, in whichever mode r uses: a
// Content-Type starting with application/cloudevents-batch is batched mode,
// one starting with application/cloudevents (case-insensitive) is
// structured mode, anything else is binary mode. In binary mode ce- header
// values are percent-decoded (see DecodeHeaderValue) and Content-Type
// becomes datacontenttype. Only the JSON event format is supported.
//
// ReadRequest reads at most maxBody bytes of the body (no limit when
// maxBody <= 0) and fails with ErrTooLarge beyond that. Each event returned
// has passed validation.
func ReadRequest(r *http.Request, maxBody int64) ([]event.Event, error) {
	body, err := readBody(r, maxBody)
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case hasPrefixFold(ct, "application/cloudevents-batch"):
		if err := checkJSONFormat(ct, ContentTypeBatch); err != nil {
			return nil, err
		}
		return readBatch(body)
	case hasPrefixFold(ct, "application/cloudevents"):
		if err := checkJSONFormat(ct, ContentTypeStructured); err != nil {
			return nil, err
		}
		e, err := readStructured(body)
		if err != nil {
			return nil, err
		}
		return []event.Event{e}, nil
	default:
		e, err := readBinary(r.Header, body)
		if err != nil {
			return nil, err
		}
		return []event.Event{e}, nil
	}
}

func readBody(r *http.Request, maxBody int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if maxBody <= 0 {
		return io.ReadAll(r.Body)
	}
	if r.ContentLength > maxBody {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, r.ContentLength, maxBody)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if n > maxBody {
		return nil, fmt.Errorf("%w: limit %d bytes", ErrTooLarge, maxBody)
	}
	return buf.Bytes(), nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// checkJSONFormat accepts ct only when its media type is want.
func checkJSONFormat(ct, want string) error {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("%w: Content-Type %q: %v", ErrMalformed, ct, err)
	}
	if mt != want {
		return fmt.Errorf("%w: %q", ErrUnsupportedFormat, mt)
	}
	return nil
}

func readStructured(body []byte) (event.Event, error) {
	if !utf8.Valid(body) {
		return event.Event{}, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	return UnmarshalJSON(body)
}

func readBatch(body []byte) ([]event.Event, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: batch: %v", ErrMalformed, err)
	}
	events := make([]event.Event, len(raw))
	for i, m := range raw {
		e, err := UnmarshalJSON(m)
		if err != nil {
			return nil, fmt.Errorf("batch event %d: %w", i, err)
		}
		events[i] = e
	}
	return events, nil
}

func readBinary(h http.Header, body []byte) (event.Event, error) {
	e := event.New(event.CloudEventsVersionV1)
	sawVersion := false
	for key, vals := range h {
		if len(key) < 3 || !strings.EqualFold(key[:3], "ce-") {
			continue
		}
		name := strings.ToLower(key[3:])
		if len(vals) != 1 {
			return event.Event{}, fmt.Errorf("%w: header %s appears %d times", ErrMalformed, key, len(vals))
		}
		v, err := DecodeHeaderValue(vals[0])
		if err != nil {
			return event.Event{}, fmt.Errorf("%w: header %s: %v", ErrMalformed, key, err)
		}
		switch name {
		case "specversion":
			if v != event.CloudEventsVersionV1 {
				return event.Event{}, fmt.Errorf("%w: specversion %q is not supported", ErrMalformed, v)
			}
			sawVersion = true
		case "id":
			e.SetID(v)
		case "source":
			e.SetSource(v)
		case "type":
			e.SetType(v)
		case "subject":
			e.SetSubject(v)
		case "time":
			t, err := parseTime(v)
			if err != nil {
				return event.Event{}, fmt.Errorf("%w: ce-time: %v", ErrMalformed, err)
			}
			e.SetTime(t)
		case "dataschema":
			e.SetDataSchema(v)
		case "datacontenttype":
			return event.Event{}, fmt.Errorf("%w: binary mode carries datacontenttype in Content-Type, not ce-datacontenttype", ErrMalformed)
		default:
			if err := checkExtensionName(name); err != nil {
				return event.Event{}, fmt.Errorf("%w: header %s: %v", ErrMalformed, key, err)
			}
			e.SetExtension(name, v)
		}
	}
	if !sawVersion {
		return event.Event{}, fmt.Errorf("%w: no ce-specversion header", ErrMalformed)
	}
	if ct := h.Get("Content-Type"); ct != "" {
		e.SetDataContentType(ct)
	}
	if len(body) > 0 {
		e.DataEncoded = body
	}
	if err := validate(&e); err != nil {
		return event.Event{}, err
	}
	return e, nil
}

// validate applies sdk-go's validation and the spec rules it leaves out:
// specversion 1.0, extension names, and valid UTF-8 in string attributes.
func validate(e *event.Event) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: %s", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	if e.SpecVersion() != event.CloudEventsVersionV1 {
		return fmt.Errorf("%w: specversion %q is not supported", ErrMalformed, e.SpecVersion())
	}
	for _, s := range []string{e.ID(), e.Source(), e.Type(), e.Subject(), e.DataSchema(), e.DataContentType()} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%w: attribute is not valid UTF-8", ErrMalformed)
		}
	}
	for name, v := range e.Extensions() {
		if err := checkExtensionName(name); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if s, ok := v.(string); ok && !utf8.ValidString(s) {
			return fmt.Errorf("%w: extension %q is not valid UTF-8", ErrMalformed, name)
		}
	}
	return nil
}

// parseTime reads a time attribute (RFC 3339), refusing one the protobuf
// format, in which Herald stores events, cannot hold: before year 1 or
// after year 9999.
func parseTime(v string) (time.Time, error) {
	t, err := types.ParseTime(v)
	if err != nil {
		return t, err
	}
	if err := timestamppb.New(t).CheckValid(); err != nil {
		return t, fmt.Errorf("%s is out of range (years 1 to 9999)", v)
	}
	return t, nil
}
