package filter

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// attrKind names the context attribute a filter reads. The CloudEvents 1.0
// core attributes get their own kind so reading them needs no map lookup.
type attrKind uint8

const (
	attrExtension attrKind = iota
	attrID
	attrSource
	attrSpecVersion
	attrType
	attrDataContentType
	attrDataSchema
	attrSubject
	attrTime
)

// attribute is a resolved attribute name.
type attribute struct {
	kind attrKind
	name string
}

func attributeNamed(name string) attribute {
	kind := attrExtension
	switch name {
	case "id":
		kind = attrID
	case "source":
		kind = attrSource
	case "specversion":
		kind = attrSpecVersion
	case "type":
		kind = attrType
	case "datacontenttype":
		kind = attrDataContentType
	case "dataschema":
		kind = attrDataSchema
	case "subject":
		kind = attrSubject
	case "time":
		kind = attrTime
	}
	return attribute{kind: kind, name: name}
}

// eventView reads an event's attributes in their canonical string form
// (booleans "true"/"false", integers in decimal, timestamps RFC 3339 in UTC,
// binary as standard base64, URIs as given), formatting each non-string
// value at most once per match.
//
// A missing attribute reads as "". Every filter value is non-empty, so a
// missing attribute never satisfies exact, prefix or suffix.
//
// Formatted values live in buf and are handed out as strings that share its
// memory (unsafe.String). This is sound because buf is only appended to
// while a view is in use, and every such string is dropped (the caches are
// reset) before the view is reused. No string read from a view may outlive
// the match that read it.
type eventView struct {
	event *event.Event
	v1    *event.EventContextV1 // set when the event is CloudEvents 1.0
	ctx   event.EventContext    // set otherwise (0.3), or nil

	done       uint16 // bit per attrKind whose formatted value below is valid
	source     string
	dataSchema string
	time       string
	extensions []formattedExtension
	buf        []byte

	lists [][]ruleRef // Set.Match's scratch space for candidate lists

	// Recent sources' string forms, kept across matches: url.URL.String
	// allocates, and the events of a stream come from a limited set of
	// sources. String is a pure function of the URL's fields, so an equal
	// URL has an equal string.
	sources    [sourceMemoSize]memoizedURL
	sourceNext int // the entry to replace next
}

const sourceMemoSize = 16

type memoizedURL struct {
	url url.URL
	s   string // "" for an unused entry
}

type formattedExtension struct {
	name, value string
}

var viewPool = sync.Pool{New: func() any { return new(eventView) }}

// maxPooledBuffer bounds the formatting buffer a pooled view keeps, so one
// event with a huge binary extension does not pin memory.
const maxPooledBuffer = 64 << 10

func getView(e *event.Event) *eventView {
	v := viewPool.Get().(*eventView)
	v.event = e
	if e != nil {
		switch ctx := e.Context.(type) {
		case *event.EventContextV1:
			v.v1 = ctx
		case nil:
		default:
			v.ctx = ctx
		}
	}
	return v
}

func putView(v *eventView) {
	v.event, v.v1, v.ctx = nil, nil, nil
	v.done = 0
	v.source, v.dataSchema, v.time = "", "", ""
	clear(v.extensions)
	v.extensions = v.extensions[:0]
	if cap(v.buf) > maxPooledBuffer {
		v.buf = nil
	}
	v.buf = v.buf[:0]
	clear(v.lists[:cap(v.lists)]) // do not keep a Set alive
	v.lists = v.lists[:0]
	viewPool.Put(v)
}

// get returns the canonical string form of attribute a, or "" if the event
// does not have it.
func (v *eventView) get(a attribute) string {
	if v.v1 == nil {
		return v.getOther(a)
	}
	c := v.v1
	switch a.kind {
	case attrID:
		return c.ID
	case attrSource:
		return v.sourceV1()
	case attrSpecVersion:
		return event.CloudEventsVersionV1
	case attrType:
		return c.Type
	case attrDataContentType:
		if c.DataContentType == nil {
			return ""
		}
		return *c.DataContentType
	case attrDataSchema:
		if c.DataSchema == nil {
			return ""
		}
		if v.done&(1<<attrDataSchema) == 0 {
			v.dataSchema = c.DataSchema.String()
			v.done |= 1 << attrDataSchema
		}
		return v.dataSchema
	case attrSubject:
		if c.Subject == nil {
			return ""
		}
		return *c.Subject
	case attrTime:
		if c.Time == nil {
			return ""
		}
		if v.done&(1<<attrTime) == 0 {
			v.time = v.formatTime(c.Time.Time)
			v.done |= 1 << attrTime
		}
		return v.time
	}
	value, ok := c.Extensions[a.name]
	if !ok {
		return ""
	}
	return v.formatExtension(a.name, value)
}

func (v *eventView) sourceV1() string {
	if v.done&(1<<attrSource) != 0 {
		return v.source
	}
	v.source = v.memoizedSource(&v.v1.Source.URL)
	v.done |= 1 << attrSource
	return v.source
}

func (v *eventView) memoizedSource(u *url.URL) string {
	for i := range v.sources {
		if m := &v.sources[i]; m.s != "" && m.url == *u {
			return m.s
		}
	}
	s := u.String()
	if s != "" {
		v.sources[v.sourceNext] = memoizedURL{url: *u, s: s}
		v.sourceNext = (v.sourceNext + 1) % sourceMemoSize
	}
	return s
}

// getOther reads attributes of a pre-1.0 event through the EventContext
// interface: correct, but without the 1.0 fast paths.
func (v *eventView) getOther(a attribute) string {
	c := v.ctx
	if c == nil {
		return ""
	}
	switch a.kind {
	case attrID:
		return c.GetID()
	case attrSource:
		return c.GetSource()
	case attrSpecVersion:
		return c.GetSpecVersion()
	case attrType:
		return c.GetType()
	case attrDataContentType:
		return c.GetDataContentType()
	case attrDataSchema:
		return c.GetDataSchema()
	case attrSubject:
		return c.GetSubject()
	case attrTime:
		if t := c.GetTime(); !t.IsZero() {
			return v.formatTime(t)
		}
		return ""
	}
	value, ok := c.GetExtensions()[a.name]
	if !ok {
		return ""
	}
	return v.formatExtension(a.name, value)
}

func (v *eventView) formatExtension(name string, value any) string {
	if s, ok := value.(string); ok {
		return s
	}
	for _, f := range v.extensions {
		if f.name == name {
			return f.value
		}
	}
	s := v.format(value)
	v.extensions = append(v.extensions, formattedExtension{name: name, value: s})
	return s
}

// format returns the canonical string form of a non-string attribute value,
// as the HTTP binding writes it (types.Format).
func (v *eventView) format(value any) string {
	start := len(v.buf)
	switch value := value.(type) {
	case bool:
		return strconv.FormatBool(value)
	case int32:
		v.buf = strconv.AppendInt(v.buf, int64(value), 10)
	case []byte:
		v.buf = base64.StdEncoding.AppendEncode(v.buf, value)
	case types.Timestamp:
		return v.formatTime(value.Time)
	case types.URI:
		return value.String()
	case types.URIRef:
		return value.String()
	default:
		// Values that bypassed sdk-go's SetExtension (which stores only the
		// types above): let sdk-go convert them, or print them as CESQL does.
		if s, err := types.Format(value); err == nil {
			return s
		}
		return fmt.Sprint(value)
	}
	return v.bufString(start)
}

func (v *eventView) formatTime(t time.Time) string {
	start := len(v.buf)
	v.buf = t.UTC().AppendFormat(v.buf, time.RFC3339Nano)
	return v.bufString(start)
}

// bufString returns buf[start:] as a string sharing buf's memory; see the
// eventView doc for why that is safe.
func (v *eventView) bufString(start int) string {
	b := v.buf[start:]
	return unsafe.String(unsafe.SliceData(b), len(b))
}
