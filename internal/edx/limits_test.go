package edx

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// fieldCase edits one field of a testdata event and says which path must be refused ("" = none).
type fieldCase struct {
	name  string
	file  string   // testdata event to start from
	at    []string // where the field sits in the openedx-events form
	value string
	want  string // the refused field path, "" when the value is fine
}

func fieldLimitCases() []fieldCase {
	long := strings.Repeat("é", 256) // 256 characters, 512 bytes: the limit counts characters
	atLimit := strings.Repeat("é", 255)
	cert := "certificate-created.json"
	cases := []fieldCase{
		{"name at the limit", cert, []string{"certificate", "user", "pii", "name"}, atLimit, ""},
		{"name too long", cert, []string{"certificate", "user", "pii", "name"}, long, "certificate.user.pii.name"},
		{"username too long", cert, []string{"certificate", "user", "pii", "username"}, long, "certificate.user.pii.username"},
		{"mode too long", cert, []string{"certificate", "mode"}, long, "certificate.mode"},
		{"grade too long", cert, []string{"certificate", "grade"}, long, "certificate.grade"},
		{"download URL too long", cert, []string{"certificate", "download_url"}, "https://lms.example.org/" + long, "certificate.download_url"},
		{"printed name too long", cert, []string{"certificate", "name"}, long, "certificate.name"},
		{"passing name too long", "passing-status.json", []string{"course_passing_status", "user", "pii", "name"}, long, "course_passing_status.user.pii.name"},
		{"name with a right-to-left override", cert, []string{"certificate", "user", "pii", "name"}, "Alice \u202egnp.exe", "certificate.user.pii.name"},
		{"name with a zero-width space", cert, []string{"certificate", "user", "pii", "name"}, "Ali\u200bce", "certificate.user.pii.name"},
		{"name with a control character", cert, []string{"certificate", "user", "pii", "name"}, "Alice\x07", "certificate.user.pii.name"},
		{"name with a line separator", cert, []string{"certificate", "user", "pii", "name"}, "Alice\u2028Liddell", "certificate.user.pii.name"},
		{"name with a newline", cert, []string{"certificate", "user", "pii", "name"}, "Alice\n[x](y)", "certificate.user.pii.name"},
		{"printed name with an isolate", cert, []string{"certificate", "name"}, "Alice\u2066", "certificate.name"},
		{"username with a right-to-left mark", cert, []string{"certificate", "user", "pii", "username"}, "alice\u200f", "certificate.user.pii.username"},
		{"e-mail with a bidi override", cert, []string{"certificate", "user", "pii", "email"}, "alice\u202e@example.com", "certificate.user.pii.email"},
		{"e-mail with a zero-width joiner", cert, []string{"certificate", "user", "pii", "email"}, "ali\u200dce@example.com", "certificate.user.pii.email"},
		// Persian names need the zero-width non-joiner; emoji sequences the joiner.
		{"name with a zero-width non-joiner", cert, []string{"certificate", "user", "pii", "name"}, "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", ""},
		{"name with an emoji sequence", cert, []string{"certificate", "user", "pii", "name"}, "Alice \U0001F469\u200d\U0001F52C", ""},
		{"name with markup is left to the templates", cert, []string{"certificate", "user", "pii", "name"}, "<b>Alice</b> [x](https://evil.example)", ""},
	}
	return cases
}

func editedEvent(t *testing.T, c fieldCase) map[string]any {
	t.Helper()
	obj, err := parseJSONObject(readTestdata(t, c.file))
	if err != nil {
		t.Fatal(err)
	}
	m := obj
	for _, k := range c.at[:len(c.at)-1] {
		m = m[k].(map[string]any)
	}
	m[c.at[len(c.at)-1]] = c.value
	return obj
}

func checkFieldError(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != want {
		t.Fatalf("error %v, want a *FieldError for %s", err, want)
	}
	if strings.Contains(err.Error(), "@example.com") {
		t.Fatalf("error repeats the e-mail address: %v", err)
	}
}

// Contract 4.1: the limits hold for webhook bodies, as a 400 naming the field.
func TestFieldLimitsWebhook(t *testing.T) {
	for _, c := range fieldLimitCases() {
		t.Run(c.name, func(t *testing.T) {
			body, err := json.Marshal(editedEvent(t, c))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseWebhook(WebhookRequest{ContentType: "application/json", Body: body})
			checkFieldError(t, err, c.want)
		})
	}
}

// The same limits hold for event-bus entries, which the consumer then dead-letters.
func TestFieldLimitsBus(t *testing.T) {
	for _, c := range fieldLimitCases() {
		t.Run(c.name, func(t *testing.T) {
			obj := editedEvent(t, c)
			meta := obj["event_metadata"].(map[string]any)
			typ := meta["event_type"].(string)
			data, err := EncodeAvro(typ, obj)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeBusEntry(map[string]string{"type": typ, "id": meta["id"].(string), "event_data": string(data)}, received)
			checkFieldError(t, err, c.want)
			if c.want != "" && !errors.Is(err, ErrUndecodable) {
				t.Fatalf("error %v does not wrap ErrUndecodable (the entry would be retried, not dead-lettered)", err)
			}
		})
	}
}

// Event ids are ledger keys: at most 200 bytes, no control characters, on both paths.
func TestEventIDLimits(t *testing.T) {
	for name, c := range map[string]struct {
		id   string
		want string
	}{
		"200 bytes": {strings.Repeat("x", 200), ""},
		"201 bytes": {strings.Repeat("x", 201), "event_metadata.id"},
		"control":   {"abc\x01", "event_metadata.id"},
	} {
		t.Run(name, func(t *testing.T) {
			obj := editedEvent(t, fieldCase{file: "certificate-created.json", at: []string{"event_metadata", "id"}, value: c.id})
			body, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseWebhook(WebhookRequest{ContentType: "application/json", Body: body})
			checkFieldError(t, err, c.want)
			data, err := EncodeAvro(TypeCertificateCreated, obj)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeBusEntry(map[string]string{"type": TypeCertificateCreated, "id": c.id, "event_data": string(data)}, received)
			checkFieldError(t, err, c.want)
		})
	}
}

// The exported checks give other inputs (a backfill file) the same limits.
func TestExportedFieldChecks(t *testing.T) {
	if NameProblem(strings.Repeat("é", 255)) != "" || NameProblem("Ali\u200cce") != "" {
		t.Error("a fine name was refused")
	}
	if NameProblem(strings.Repeat("a", 256)) == "" || NameProblem("a\u202eb") == "" || NameProblem("a\nb") == "" {
		t.Error("a bad name passed")
	}
	if TextProblem(strings.Repeat("a", 256)) == "" || TextProblem("\u202e") != "" {
		t.Error("TextProblem limits only the length")
	}
	if PlausibleEmail("alice\u202e@example.com") || PlausibleEmail("ali\u200dce@example.com") || !PlausibleEmail("alice@example.com") {
		t.Error("PlausibleEmail and format characters")
	}
}
