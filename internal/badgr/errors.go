package badgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

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
	Op         string        // award, batch award, list, list class, revoke, badge class, login
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

// retryableError carries a retryable HostError to callers that know only badgehost: it tells
// them how soon the host asked to be called again. (HostError cannot have that method itself:
// its field of the same name is part of its API.)
type retryableError struct {
	err   error // holds a *HostError
	after time.Duration
}

func (e *retryableError) Error() string             { return e.err.Error() }
func (e *retryableError) Unwrap() error             { return e.err }
func (e *retryableError) RetryAfter() time.Duration { return e.after }

// neutral makes an error of a public method classifiable with badgehost alone (wait, park,
// retry), keeping the badgr error in the chain so errors.As still finds *HostError and
// *LoginBlockedError.
func neutral(err error) error {
	var (
		wait *badgehost.WaitError
		perm *badgehost.PermanentError
		re   *retryableError
		lb   *LoginBlockedError
		he   *HostError
	)
	switch {
	case err == nil, errors.As(err, &wait), errors.As(err, &perm), errors.As(err, &re):
		return err // already classified by an inner call
	case errors.As(err, &lb):
		return &badgehost.WaitError{Until: lb.Until, Reason: "badge host login blocked: " + lb.Reason, Err: err}
	case !errors.As(err, &he):
		return err // Redis, the caller's context: retryable, with nothing to add
	case he.Status == http.StatusTooManyRequests:
		wait := he.RetryAfter
		if wait <= 0 {
			wait = defaultPause
		}
		return &badgehost.WaitError{Until: time.Now().Add(wait), Reason: "badge host rate limit", Err: err}
	case he.Permanent():
		return &badgehost.PermanentError{Reason: he.Op + ": " + he.Message, Err: err}
	}
	return &retryableError{err: err, after: he.RetryAfter}
}

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

var htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// describeBody builds HostError.Message from an answer: the envelope's description and details
// when there is one, otherwise whatever a proxy or Django error page offers (a JSON object's
// texts, an HTML title, the first line of plain text).
func describeBody(status int, contentType string, body []byte, env *wire.Envelope) string {
	var parts []string
	desc := ""
	if env != nil && env.Status != nil {
		desc = env.Status.Description
	}
	if desc == "" {
		desc = strings.ToLower(http.StatusText(status))
	}
	if env != nil && env.Status != nil {
		parts = env.Details()
	} else if len(body) > 0 {
		var v any
		if json.Unmarshal(body, &v) == nil {
			parts = wire.Flatten(v)
		} else if m := htmlTitle.FindSubmatch(body); m != nil {
			parts = []string{string(m[1])}
		} else if strings.HasPrefix(contentType, "text/plain") {
			line, _, _ := strings.Cut(string(body), "\n")
			parts = []string{line}
		} else if contentType != "" {
			parts = []string{"non-JSON answer (" + wire.MediaType(contentType) + ")"}
		}
	}
	msg := desc
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	return cleanMessage(msg)
}
