package badgr

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

func TestDescribeBody(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
	}{
		{"field errors nested and plain", 400, "application/json",
			`{"status":{"success":false,"description":"bad request"},"result":[],"fieldErrors":{"recipient":{"non_field_errors":["Enter a valid email address."]},"revocation_reason":"This field is required"},"validationErrors":[]}`,
			"bad request: recipient: Enter a valid email address.; revocation_reason: This field is required"},
		{"field errors as a list (batch)", 400, "application/json",
			`{"status":{"success":false,"description":"bad request"},"result":[],"fieldErrors":[{},{"recipient":["This field is required."]}],"validationErrors":[]}`,
			"bad request: recipient: This field is required."},
		{"validation errors", 400, "application/ld+json",
			`{"status":{"success":false,"description":"bad request"},"result":[],"fieldErrors":{},"validationErrors":["You may not award this badge to this recipient."]}`,
			"bad request: You may not award this badge to this recipient."},
		{"field errors as a string", 429, "application/json",
			`{"status":{"success":false,"description":"miscellaneous error"},"result":[],"fieldErrors":"Request was throttled.","validationErrors":[]}`,
			"miscellaneous error: Request was throttled."},
		{"e-mail scrubbed", 400, "application/json",
			`{"status":{"success":false,"description":"bad request"},"fieldErrors":{},"validationErrors":["Recipient Learner@Example.org (learner+x@mail.example.org) is blacklisted"]}`,
			"bad request: Recipient <email> (<email>) is blacklisted"},
		{"html 404", 404, "text/html; charset=utf-8", "<!doctype html><html><head><title>Not Found</title></head><body>…</body></html>",
			"not found: Not Found"},
		{"html without title", 500, "text/html", "<h1>Server Error (500)</h1>", "internal server error: non-JSON answer (text/html)"},
		{"plain text", 502, "text/plain", "upstream connect error\nmore", "bad gateway: upstream connect error"},
		{"non-envelope json", 415, "application/json", `{"detail":"Unsupported media type \"text/xml\" in request."}`,
			`unsupported media type: Unsupported media type "text/xml" in request.`},
		{"empty", 503, "", "", "service unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if got := describeBody(tc.status, tc.contentType, body, wire.ParseEnvelope(body)); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestMessageTruncated(t *testing.T) {
	long := strings.Repeat("é", 400)
	got := cleanMessage(long)
	if len(got) > maxMessage || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("truncated to %d bytes: %q…", len(got), got[:10])
	}
}

func TestHostErrorClassification(t *testing.T) {
	cases := []struct {
		err       HostError
		permanent bool
		text      string
	}{
		{HostError{Op: "award", Status: 400, Message: "bad request: x"}, true, "badgr award: 400 bad request: x"},
		{HostError{Op: "award", Status: 404, Message: "entity not found or insufficient privileges"}, true, ""},
		{HostError{Op: "award", Status: 415}, true, ""},
		{HostError{Op: "award", Status: 401, Message: "no valid auth token found"}, false, ""},
		{HostError{Op: "award", Status: 429, RetryAfter: 5 * time.Second, Message: "m"}, false, "badgr award: 429 m (retry after 5s)"},
		{HostError{Op: "award", Status: 500}, false, ""},
		{HostError{Op: "award", Status: 302}, false, ""},
		{HostError{Op: "award", Timeout: true, Message: "no answer within 15s"}, false, "badgr award: timeout: no answer within 15s"},
		{HostError{Op: "list", Message: "connection refused"}, false, "badgr list: no answer: connection refused"},
	}
	for _, tc := range cases {
		if tc.err.Permanent() != tc.permanent || tc.err.Retryable() == tc.permanent {
			t.Errorf("%+v: permanent %v", tc.err, tc.err.Permanent())
		}
		if tc.text != "" && tc.err.Error() != tc.text {
			t.Errorf("Error() = %q, want %q", tc.err.Error(), tc.text)
		}
	}
}

func TestLoginBlockedErrorIs(t *testing.T) {
	var err error = &LoginBlockedError{Until: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Reason: "password grant answered 400 invalid_grant"}
	if !errors.Is(err, ErrLoginBlocked) || errors.Is(err, badgehost.ErrAlreadyAwarded) {
		t.Error("errors.Is")
	}
	if want := "badgr: login to the badge host is blocked until 2026-01-01T00:00:00Z: password grant answered 400 invalid_grant"; err.Error() != want {
		t.Errorf("Error() = %q", err)
	}
}
