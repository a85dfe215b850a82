package publish

import (
	"fmt"
	"mime"
	"net/url"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/cevent"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
)

// Violation is one reason an event is invalid.
type Violation struct {
	Field       string // e.g. "events[2].attributes[Foo]"
	Description string
}

// InvalidError is returned when any event in a Publish call is invalid.
// Nothing of the call is stored.
type InvalidError struct {
	Violations []Violation
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString("invalid events: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Description)
	}
	return b.String()
}

// reserved are attribute names that may not appear in the attributes map:
// the required attributes have fields of their own, and "data" is not an
// attribute.
var reserved = map[string]bool{"id": true, "source": true, "specversion": true, "type": true, "data": true}

// Validate checks one event against CloudEvents 1.0 and Herald's limits and
// converts it. field is the event's path in the request, e.g. "events[0]";
// maxSize is the largest event accepted, in bytes of its protobuf encoding.
func Validate(field string, pe *cloudeventsv1.CloudEvent, maxSize int) (event.Event, []Violation) {
	var vs []Violation
	add := func(f, format string, args ...any) {
		vs = append(vs, Violation{Field: field + f, Description: fmt.Sprintf(format, args...)})
	}
	if pe == nil {
		add("", "event is missing")
		return event.Event{}, vs
	}
	if size := proto.Size(pe); size > maxSize {
		add("", "event is %d bytes; the limit is %d", size, maxSize)
	}
	if pe.GetId() == "" {
		add(".id", "required")
	}
	if pe.GetSource() == "" {
		add(".source", "required")
	} else if _, err := url.Parse(pe.GetSource()); err != nil {
		add(".source", "must be a URI-reference: %v", err)
	}
	switch pe.GetSpecVersion() {
	case "1.0":
	case "":
		add(".spec_version", "required")
	default:
		add(".spec_version", "must be \"1.0\", got %q", pe.GetSpecVersion())
	}
	if pe.GetType() == "" {
		add(".type", "required")
	}
	for name, v := range pe.GetAttributes() {
		f := ".attributes[" + name + "]"
		switch {
		case reserved[name]:
			add(f, "%q is not allowed as an attribute name", name)
		case !validName(name):
			add(f, "attribute names must be non-empty and use only lowercase letters a-z and digits 0-9")
		case v.GetAttr() == nil:
			add(f, "value is missing")
		}
	}
	if len(vs) > 0 {
		return event.Event{}, vs
	}
	e, err := cevent.FromProto(pe)
	if err != nil {
		add("", "%v", err)
		return event.Event{}, vs
	}
	if err := e.Validate(); err != nil {
		add("", "%v", err)
	}
	if ct := e.DataContentType(); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !strings.Contains(mt, "/") {
			add(".attributes[datacontenttype]", "must be a media type such as application/json (RFC 2046)")
		}
	}
	// What is accepted must be deliverable in every content mode.
	if err := cehttp.CheckEvent(&e); err != nil && len(vs) == 0 {
		add("", "%v", err)
	}
	return e, vs
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
