package edx

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrUnsupportedMediaType is returned by ParseWebhook for a body it cannot read at all (the
// handler answers 415). Test with errors.Is: the returned error names the content type.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// ErrUndecodable marks an event-bus entry that cannot become an Event (bad Avro, a missing
// field, an invalid value). Such an entry will never decode, so the consumer dead-letters it
// instead of retrying. Test with errors.Is; a *FieldError may be wrapped too.
var ErrUndecodable = errors.New("undecodable event")

// FieldError is a malformed or missing field (the webhook handler answers 400).
type FieldError struct {
	// Path is the dotted field path in the openedx-events form, e.g. certificate.user.pii.email,
	// whatever shape the body had, so operators can look it up in the Open edX docs; "body"
	// when the body as a whole is unreadable.
	Path string
	// Problem says what is wrong. It never contains an e-mail address.
	Problem string
	// Key is where the field sits in the sender's own shape when that differs from Path: a
	// flattened key, a CloudEvents attribute or header, an event-bus entry field.
	Key string
}

func (e *FieldError) Error() string {
	where := e.Path
	if where == "" {
		where = "body"
	}
	if e.Key != "" && e.Key != e.Path {
		where += " (" + e.Key + ")"
	}
	return where + ": " + e.Problem
}

// UnsupportedTypeError is a readable event of a type the bridge does not act on (the webhook
// handler answers 200 ignored; the bus consumer acknowledges and counts it).
type UnsupportedTypeError struct {
	Type string
}

func (e *UnsupportedTypeError) Error() string {
	return "unsupported event type " + show(e.Type)
}

// maxShown bounds how much of a sender's value an error message repeats.
const maxShown = 64

// show quotes a value for an error message: shortened, and withheld when it may be an e-mail
// address, because error messages end up in logs and HTTP answers.
func show(s string) string {
	if mayBeEmail(s) {
		return "(value withheld: it may be an e-mail address)"
	}
	if utf8.RuneCountInString(s) > maxShown {
		runes := []rune(s)
		s = string(runes[:maxShown]) + "…"
	}
	return strconv.Quote(s)
}

// mayBeEmail reports whether s has an "@" other than those that course keys legitimately carry.
func mayBeEmail(s string) bool {
	for _, q := range []string{"+ccx@", "+branch@", "+version@"} {
		s = strings.ReplaceAll(s, q, "+")
	}
	return strings.Contains(s, "@")
}
