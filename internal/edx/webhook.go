package edx

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// WebhookRequest is what ParseWebhook needs of an HTTP request.
type WebhookRequest struct {
	ContentType string      // the Content-Type header; may be empty
	Header      http.Header // read for CloudEvents binary mode (ce-* headers); may be nil
	Body        []byte
	Received    time.Time // stands in for a missing event time; zero means now
}

// ParseWebhook reads a webhook body in any of the shapes of CONTRACT 4.1 (openedx-events JSON,
// CloudEvents structured or binary, flattened JSON or form) into an Event.
//
// Errors: ErrUnsupportedMediaType (wrapped) for a content type it cannot read; *FieldError for
// a malformed body or field; *UnsupportedTypeError for a readable event of another type.
func ParseWebhook(r WebhookRequest) (Event, error) {
	received := r.Received
	if received.IsZero() {
		received = time.Now()
	}
	format, err := bodyFormat(r.ContentType, r.Body)
	if err != nil {
		return Event{}, err
	}
	var doc document
	switch format {
	case formatForm:
		doc, err = formDocument(r.Body)
	case formatCloudEvent:
		var obj map[string]any
		if obj, err = parseJSONObject(r.Body); err == nil {
			doc, err = structuredCloudEvent(obj)
		}
	default:
		var obj map[string]any
		if obj, err = parseJSONObject(r.Body); err == nil {
			doc, err = jsonDocument(obj, r.Header)
		}
	}
	if err != nil {
		return Event{}, err
	}
	return normalize(doc, received)
}

type format int

const (
	formatJSON       format = iota // openedx-events, CloudEvents binary or flattened, told apart by keys
	formatCloudEvent               // CloudEvents structured mode
	formatForm                     // flattened, form-encoded
)

// bodyFormat decides how to read a body from its content type. A missing content type is
// sniffed as JSON when the body is an object, which is all a careless sender can mean.
func bodyFormat(contentType string, body []byte) (format, error) {
	if strings.TrimSpace(contentType) == "" {
		trimmed := bytes.TrimLeft(bytes.TrimPrefix(body, utf8BOM), " \t\r\n")
		if len(trimmed) > 0 && trimmed[0] == '{' {
			return formatJSON, nil
		}
		return 0, fmt.Errorf("%w: no content type, and the body is not a JSON object", ErrUnsupportedMediaType)
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, fmt.Errorf("%w: content type %s: %v", ErrUnsupportedMediaType, show(contentType), err)
	}
	if cs, ok := params["charset"]; ok && !isUTF8Charset(cs) {
		return 0, fmt.Errorf("%w: charset %s (want utf-8)", ErrUnsupportedMediaType, show(cs))
	}
	switch mediaType {
	case "application/json":
		return formatJSON, nil
	case "application/cloudevents+json":
		return formatCloudEvent, nil
	case "application/x-www-form-urlencoded":
		return formatForm, nil
	}
	return 0, fmt.Errorf("%w: %s (want application/json, application/cloudevents+json or application/x-www-form-urlencoded)",
		ErrUnsupportedMediaType, show(mediaType))
}

func isUTF8Charset(cs string) bool {
	switch strings.ToLower(cs) {
	case "utf-8", "utf8", "us-ascii":
		return true
	}
	return false
}

// jsonDocument tells apart the shapes a JSON body may have: openedx-events (event_metadata or
// a payload object at the top), CloudEvents binary (ce-type header, body is the data),
// CloudEvents structured sent as application/json (specversion, or type and data), and
// otherwise the flattened payload.
func jsonDocument(obj map[string]any, h http.Header) (document, error) {
	_, hasMeta := obj[metadataKey]
	hasPayload := slices.ContainsFunc(payloadKeys, func(k string) bool {
		_, ok := obj[k].(map[string]any)
		return ok
	})
	switch {
	case hasMeta:
		return document{root: obj}, nil
	case h.Get("ce-type") != "" || h.Get("ce-specversion") != "":
		return binaryCloudEvent(obj, h), nil
	case hasPayload:
		return document{root: obj}, nil // no metadata: the type is reported missing
	}
	if _, ok := obj["specversion"]; ok {
		return structuredCloudEvent(obj)
	}
	if _, ok := obj["data"]; ok {
		if _, ok := obj["type"]; ok {
			return structuredCloudEvent(obj)
		}
	}
	if looksFlattened(obj) {
		return flatDocument(obj, false), nil
	}
	return document{root: obj}, nil // no shape recognised: errors name openedx-events paths
}

// looksFlattened reports whether any key starts like a flattened metadata or payload path, or
// the body names its type the way openedx-events-sender does.
func looksFlattened(obj map[string]any) bool {
	if _, ok := obj[senderTypeKey]; ok {
		return true
	}
	for k := range obj {
		if strings.HasPrefix(k, metadataKey+"_") {
			return true
		}
		for _, p := range payloadKeys {
			if strings.HasPrefix(k, p+"_") {
				return true
			}
		}
	}
	return false
}

// cloudEventAttributes maps metadata fields to CloudEvents attributes: OEP-41 names id, type,
// source and time after CloudEvents; the rest travel as extension attributes of the same name.
var cloudEventAttributes = map[string]string{
	"event_type": "type", "id": "id", "source": "source", "time": "time",
	"minorversion": "minorversion", "sourcehost": "sourcehost", "sourcelib": "sourcelib",
}

// structuredCloudEvent reads CloudEvents 1.0 structured mode: attributes at the top, the
// payload object under data.
func structuredCloudEvent(obj map[string]any) (document, error) {
	meta := map[string]any{}
	for field, attr := range cloudEventAttributes {
		if v, ok := obj[attr]; ok {
			meta[field] = v
		}
	}
	root := map[string]any{metadataKey: meta}
	origin := func(path string) string {
		if field, ok := strings.CutPrefix(path, metadataKey+"."); ok {
			return cloudEventAttributes[field]
		}
		return "data." + path
	}
	switch data := obj["data"].(type) {
	case map[string]any:
		for k, v := range data {
			if k != metadataKey { // the attributes are the metadata; data cannot override them
				root[k] = v
			}
		}
	case nil:
		if _, ok := obj["data_base64"]; ok {
			return document{}, &FieldError{Path: "data", Problem: "data_base64 is not supported; send the payload as a JSON object in data"}
		}
		// No data: the payload is reported missing by the normalizer, once the type is known.
	default:
		return document{}, &FieldError{Path: "data", Problem: "expected an object, got " + describe(data)}
	}
	return document{root: root, origin: origin}, nil
}

// binaryCloudEvent reads CloudEvents 1.0 binary mode: attributes in ce-* headers, the body is
// the data object.
func binaryCloudEvent(data map[string]any, h http.Header) document {
	meta := map[string]any{}
	for field, attr := range cloudEventAttributes {
		if vs := h.Values("ce-" + attr); len(vs) == 1 {
			meta[field] = vs[0]
		} else if len(vs) > 1 {
			meta[field] = vs // reported as "given N times" if the field is read
		}
	}
	root := map[string]any{metadataKey: meta}
	for k, v := range data {
		root[k] = v
	}
	origin := func(path string) string {
		if field, ok := strings.CutPrefix(path, metadataKey+"."); ok {
			return "header ce-" + cloudEventAttributes[field]
		}
		return ""
	}
	return document{root: root, origin: origin}
}

// senderTypeKey is where open-craft/openedx-events-sender puts the event type when it sends its
// default body (no field mapping): the payload flattened without its payload key
// (user_pii_email, course_course_key, is_active, …) plus "event".
const senderTypeKey = "event"

// flatDocument reads a flattened payload: each key is looked up whole among the flattened
// field paths of the event type the body names (see flatIndex); other keys are ignored. A body
// that names its type in event_metadata_event_type has every path under its full name
// (enrollment_user_pii_email), as eox-hooks is configured to send and openedx-events-sender
// sends with a field mapping; a body that names it in "event" instead is
// openedx-events-sender's default, whose payload keys lack the payload key.
func flatDocument(flat map[string]any, form bool) document {
	rawType, hasType := flat[flatKey(metadataKey+".event_type")]
	keyOf := flatKey
	if !hasType {
		if rawType, hasType = flat[senderTypeKey]; hasType {
			keyOf = senderKey(rawType)
		}
	}
	eventType, _ := rawType.(string)
	root := map[string]any{}
	for _, path := range flatIndex(strings.TrimSpace(eventType)) {
		if v, ok := flat[keyOf(path)]; ok {
			setPath(root, path, v)
		}
	}
	if hasType {
		// Read even when it is not a string, so the normalizer reports its kind.
		setPath(root, metadataKey+".event_type", rawType)
	}
	return document{root: root, origin: keyOf, form: form}
}

// senderKey gives the key function of openedx-events-sender's default body for the type it
// names: payload paths without their payload key, the event type in "event", and the
// metadata under its full flattened name (the sender has none by default; a mapping may add it).
func senderKey(rawType any) func(path string) string {
	eventType, _ := rawType.(string)
	payload, _ := payloadKeyOf(strings.TrimSpace(eventType))
	return func(path string) string {
		if path == metadataKey+".event_type" {
			return senderTypeKey
		}
		if rest, ok := strings.CutPrefix(path, payload+"."); ok && payload != "" {
			return flatKey(rest)
		}
		return flatKey(path)
	}
}

// setPath stores v at a dotted path, creating the objects on the way.
func setPath(root map[string]any, path string, v any) {
	names := strings.Split(path, ".")
	cur := root
	for _, name := range names[:len(names)-1] {
		next, ok := cur[name].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[name] = next
		}
		cur = next
	}
	cur[names[len(names)-1]] = v
}

// formDocument reads a form-encoded flattened body, as Python requests sends a dict: a list
// becomes a repeated key (sourcelib=11&sourcelib=2&sourcelib=0), None values are left out.
func formDocument(body []byte) (document, error) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return document{}, &FieldError{Path: "body", Problem: "invalid form encoding: " + err.Error()}
	}
	flat := make(map[string]any, len(values))
	for k, vs := range values {
		if len(vs) == 1 {
			flat[k] = vs[0]
		} else {
			flat[k] = vs
		}
	}
	return flatDocument(flat, true), nil
}
