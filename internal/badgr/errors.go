package badgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrAlreadyAwarded is returned by Award when the host refuses the award because an unrevoked,
// unexpired assertion of the badge class already exists for the recipient (Badgr's answer to
// allowDuplicateAwards=false). Callers treat it as success and List to learn the entityId.
var ErrAlreadyAwarded = errors.New("badgr: a previous award of this badge already exists for this recipient")

// ErrLoginBlocked matches every *LoginBlockedError with errors.Is.
var ErrLoginBlocked = errors.New("badgr: login to the badge host is blocked")

// LoginBlockedError says the badge host refused a login and every call is held back until Until,
// so that a wrong password retried quickly does not lock out the correct one (Badgr's login
// backoff doubles with each failure). The block is shared by all replicas through Redis.
type LoginBlockedError struct {
	Until  time.Time
	Reason string // what the token endpoint said; never credentials
}

func (e *LoginBlockedError) Error() string {
	msg := "badgr: login to the badge host is blocked until " + e.Until.UTC().Format(time.RFC3339)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Is makes errors.Is(err, ErrLoginBlocked) true.
func (e *LoginBlockedError) Is(target error) bool { return target == ErrLoginBlocked }

// HostError is a failed call to the badge host: an error answer (Status set), or no answer at all
// (Status 0; Timeout when the call ran out of time, in which case an award may still have been
// made). Status 429 is also used, with no request sent, when the shared pause or rate limit would
// outlast the caller's deadline.
type HostError struct {
	Op         string        // award, list, revoke, badge class, login
	Status     int           // HTTP status; 0 when no answer arrived
	Message    string        // the host's description and details, e-mails scrubbed, truncated
	RetryAfter time.Duration // from Retry-After (429, 503), or the remaining shared pause
	Timeout    bool          // the call timed out: its effect on the host is unknown
}

func (e *HostError) Error() string {
	var b strings.Builder
	b.WriteString("badgr ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, "%d %s", e.Status, e.Message)
	case e.Timeout:
		b.WriteString("timeout")
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	default:
		b.WriteString("no answer")
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter.Round(time.Millisecond))
	}
	return b.String()
}

// Permanent reports whether repeating the same request cannot succeed: a validation error, an
// unknown or invisible object (Badgr answers 404 for both), an unsupported media type. A 401 is
// not permanent (the next attempt logs in again), nor are 408, 425 and 429, nor any answer that
// is not a 4xx.
func (e *HostError) Permanent() bool {
	if e.Status < 400 || e.Status > 499 {
		return false
	}
	switch e.Status {
	case http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return true
}

// Retryable reports whether the same request may succeed later (timeouts, connection errors,
// 5xx, 429, 401).
func (e *HostError) Retryable() bool { return !e.Permanent() }

// maxMessage bounds HostError.Message: enough for Badgr's validation texts, short enough for a
// log line and a ledger field.
const maxMessage = 300

// emailPattern matches anything shaped like an e-mail address. It is deliberately broad: a false
// positive only costs a little detail in an error message, a false negative leaks personal data.
var emailPattern = regexp.MustCompile(`[^\s@<>()\[\]{},;:"'/\\]+@[^\s@<>()\[\]{},;:"'/\\]+`)

// scrub replaces e-mail-like substrings, so host messages can go into errors and logs.
func scrub(s string) string { return emailPattern.ReplaceAllString(s, "<email>") }

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// cleanMessage makes a host-provided text safe and short enough for an error string.
func cleanMessage(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return truncate(scrub(s), maxMessage)
}

// envelope is Badgr's v2 answer shape. fieldErrors and validationErrors are kept raw because
// their shapes vary: fieldErrors is an object (values lists, strings or nested objects), a list
// (batch award) or a bare string (DRF throttling detail).
type envelope struct {
	Status *struct {
		Success     bool   `json:"success"`
		Description string `json:"description"`
	} `json:"status"`
	Result           json.RawMessage `json:"result"`
	FieldErrors      json.RawMessage `json:"fieldErrors"`
	ValidationErrors json.RawMessage `json:"validationErrors"`
}

// parseEnvelope returns the envelope in body, or nil when body does not have its shape (error
// pages of proxies and Django come as HTML or other JSON).
func parseEnvelope(body []byte) *envelope {
	var env envelope
	if json.Unmarshal(body, &env) != nil || (env.Status == nil && env.Result == nil) {
		return nil
	}
	return &env
}

// validationErrors returns the envelope's validationErrors flattened to strings.
func (e *envelope) validationErrors() []string {
	return flattenRaw(e.ValidationErrors)
}

// hasValidationError reports whether any validation error contains substr.
func (e *envelope) hasValidationError(substr string) bool {
	for _, m := range e.validationErrors() {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

// details lists the envelope's error texts: field errors first, then validation errors.
func (e *envelope) details() []string {
	return append(flattenRaw(e.FieldErrors), e.validationErrors()...)
}

func flattenRaw(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	var out []string
	flatten(&out, "", v)
	return out
}

// flatten turns a DRF error structure into "field: message" strings. The field is left out when
// the message already names it ("Only issuedOn dates in the past are acceptable.") and for
// non_field_errors, so messages read the way Badgr wrote them.
func flatten(out *[]string, field string, v any) {
	switch x := v.(type) {
	case nil:
	case string:
		if x == "" {
			return
		}
		if field != "" && !strings.Contains(x, lastSegment(field)) {
			x = field + ": " + x
		}
		*out = append(*out, x)
	case []any:
		for _, item := range x {
			flatten(out, field, item)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := field
			if k != "non_field_errors" && k != "detail" {
				if sub != "" {
					sub += "."
				}
				sub += k
			}
			flatten(out, sub, x[k])
		}
	default:
		b, _ := json.Marshal(x)
		flatten(out, field, string(b))
	}
}

func lastSegment(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[i+1:]
	}
	return field
}

var htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// describeBody builds HostError.Message from an answer: the envelope's description and details
// when there is one, otherwise whatever a proxy or Django error page offers (a JSON object's
// texts, an HTML title, the first line of plain text).
func describeBody(status int, contentType string, body []byte, env *envelope) string {
	var parts []string
	desc := ""
	if env != nil && env.Status != nil {
		desc = env.Status.Description
	}
	if desc == "" {
		desc = strings.ToLower(http.StatusText(status))
	}
	if env != nil && env.Status != nil {
		parts = env.details()
	} else if len(body) > 0 {
		var v any
		if json.Unmarshal(body, &v) == nil {
			flatten(&parts, "", v)
		} else if m := htmlTitle.FindSubmatch(body); m != nil {
			parts = []string{string(m[1])}
		} else if strings.HasPrefix(contentType, "text/plain") {
			line, _, _ := strings.Cut(string(body), "\n")
			parts = []string{line}
		} else if contentType != "" {
			parts = []string{"non-JSON answer (" + mediaType(contentType) + ")"}
		}
	}
	msg := desc
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	return cleanMessage(msg)
}

func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(strings.ToLower(mt))
}
