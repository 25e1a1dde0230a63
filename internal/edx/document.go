package edx

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// document is a body brought into the openedx-events JSON form
// ({"event_metadata": {...}, "<payload key>": {...}}), whatever shape it arrived in, so that
// one normalizer validates the webhook bodies and the event-bus entries alike.
//
// Leaf values are whatever the source gave: string, json.Number, bool and nil from JSON;
// string, or []string for a repeated key, from a form; int64, float64, []byte from Avro.
// The accessors below accept each of these wherever the platform's meaning is unambiguous.
type document struct {
	root map[string]any
	// origin names where a path sits in the sender's own shape (a flattened key, a CloudEvents
	// attribute or header, a bus entry field), for error messages; nil for the openedx-events
	// form.
	origin func(path string) string
	// form is set for form-encoded bodies, where an unescaped '+' arrives as a space.
	form bool
}

func (d document) fail(path, problem string) *FieldError {
	e := &FieldError{Path: path, Problem: problem}
	if d.origin != nil {
		e.Key = d.origin(path)
	}
	return e
}

// lookup gives the value at a dotted path, nil when it is absent or null.
func (d document) lookup(path string) (any, error) {
	var cur any = d.root
	walked := ""
	for name := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, d.fail(walked, "expected an object, got "+describe(cur))
		}
		walked = joinPath(walked, name)
		cur = m[name]
		if cur == nil {
			return nil, nil
		}
	}
	return cur, nil
}

// describe names the JSON kind of a value for error messages.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, int64, float64:
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case []string:
		return "a repeated key"
	case []byte:
		return "bytes"
	}
	return fmt.Sprintf("a %T", v)
}

// text gives a string field. Numbers are accepted by their literal text (a grade sent as 0.87).
func (d document) text(path string) (s string, present bool, err error) {
	v, err := d.lookup(path)
	if err != nil || v == nil {
		return "", false, err
	}
	switch t := v.(type) {
	case string:
		if !utf8.ValidString(t) {
			return "", true, d.fail(path, "not valid UTF-8")
		}
		return t, true, nil
	case json.Number:
		return t.String(), true, nil
	case int64:
		return strconv.FormatInt(t, 10), true, nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true, nil
	}
	return "", true, d.wrongKind(path, v, "a string")
}

// required gives a string field that must be present and not blank, without surrounding
// white space.
func (d document) required(path string) (string, error) {
	s, _, err := d.text(path)
	if err != nil {
		return "", err
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", d.fail(path, "missing")
	}
	return s, nil
}

// optional gives a string field, "" when absent.
func (d document) optional(path string) (string, error) {
	s, _, err := d.text(path)
	return s, err
}

const boolWant = "want true/false, True/False or 1/0"

// boolean gives a boolean field: JSON true/false, 1/0 as number or string, and the
// true/false/True/False strings that Python's str() and form encoding produce.
func (d document) boolean(path string) (value, present bool, err error) {
	v, err := d.lookup(path)
	if err != nil || v == nil {
		return false, false, err
	}
	switch t := v.(type) {
	case bool:
		return t, true, nil
	case string, json.Number, int64:
	default:
		return false, true, d.wrongKind(path, v, "a boolean")
	}
	s, _, err := d.text(path)
	if err != nil {
		return false, true, err
	}
	switch s = strings.TrimSpace(s); {
	case s == "1", strings.EqualFold(s, "true"):
		return true, true, nil
	case s == "0", strings.EqualFold(s, "false"):
		return false, true, nil
	}
	return false, true, d.fail(path, show(s)+" is not a boolean ("+boolWant+")")
}

// userID gives a required LMS user id: a positive integer, as a number or a decimal string.
// LMS ids start at 1, so 0 is a sender's placeholder rather than a learner.
func (d document) userID(path string) (int64, error) {
	v, err := d.lookup(path)
	if err != nil {
		return 0, err
	}
	const want = " is not a user id (want a positive integer)"
	switch t := v.(type) {
	case nil:
		return 0, d.fail(path, "missing")
	case int64:
		if t <= 0 {
			return 0, d.fail(path, strconv.FormatInt(t, 10)+want)
		}
		return t, nil
	case string, json.Number:
	default:
		return 0, d.wrongKind(path, v, "a number")
	}
	s, _, err := d.text(path)
	if err != nil {
		return 0, err
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, d.fail(path, "missing")
	}
	// ParseInt alone would take "+42"; digits only is what the platform sends.
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || s[0] == '+' {
		return 0, d.fail(path, show(s)+want)
	}
	return n, nil
}

// wrongKind reports a value of the wrong JSON kind, or a form key given several times.
func (d document) wrongKind(path string, v any, want string) error {
	if r, ok := v.([]string); ok {
		return d.fail(path, fmt.Sprintf("given %d times", len(r)))
	}
	return d.fail(path, "expected "+want+", got "+describe(v))
}

// timeLayouts are the forms senders write event times in. When parsing, Go accepts a fraction
// of any length after the seconds even where the layout has none.
var timeLayouts = []string{
	time.RFC3339,                // isoformat(): 2024-05-27T12:25:45.678901+00:00, and …Z
	"2006-01-02 15:04:05Z07:00", // Python str(): 2024-05-27 12:25:45.678901+00:00
	"2006-01-02T15:04:05Z0700",  // strftime %z offsets, without a colon
	"2006-01-02 15:04:05Z0700",
	"2006-01-02T15:04:05", // naive: EventsMetadata times are UTC
	"2006-01-02 15:04:05",
}

const timeWant = "want RFC 3339 or 2024-05-27 12:25:45.678901+00:00"

// parseEventTime parses an event time into UTC with the microsecond precision of the
// platform's datetimes, so a time survives every shape and the bus unchanged.
// ParseTime reads an event time in any form senders use (RFC 3339, Python's str() form, naive =
// UTC) into UTC at the microsecond precision the ledger compares at.
func ParseTime(s string) (time.Time, bool) {
	s = strings.ToUpper(strings.TrimSpace(s)) // RFC 3339 allows a lower-case t and z
	if len(s) > 64 {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Truncate(time.Microsecond), true
		}
	}
	return time.Time{}, false
}

// eventTime gives the event time, or the receive time when the sender gave none.
func (d document) eventTime(path string, received time.Time) (t time.Time, missing bool, err error) {
	s, _, err := d.text(path)
	if err != nil {
		return time.Time{}, false, err
	}
	if strings.TrimSpace(s) == "" {
		return received.UTC().Truncate(time.Microsecond), true, nil
	}
	t, ok := ParseTime(s)
	if !ok {
		return time.Time{}, false, d.fail(path, show(s)+" is not a time ("+timeWant+")")
	}
	return t, false, nil
}

// maxEmailLen is the longest address SMTP can carry (RFC 5321 path limit).
const maxEmailLen = 254

// PlausibleEmail reports whether s can be an e-mail address: one "@" between non-empty
// parts, no white space, control, format or bidi characters. The badge host validates further;
// this catches a field mapped to the wrong value.
func PlausibleEmail(s string) bool {
	if len(s) > maxEmailLen {
		return false
	}
	if _, bad := hiddenRune(s, false); bad {
		return false
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}
