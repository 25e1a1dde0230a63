package backfill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/rules"
)

const demoCourse = "course-v1:OpenedX+DemoX+Demo_Course"

const testMapping = `
badges:
  - name: Demo completion
    badge_class: DemoBadge-1
    when:
      courses: ["course-v1:OpenedX+DemoX+*"]
      modes: [honor, verified]
    narrative: "Completed {{.CourseKey}}"
  - name: Demo verified
    badge_class: DemoBadge-1
    when:
      courses: ["course-v1:OpenedX+DemoX+*"]
      modes: [verified]
  - name: Demo passing
    badge_class: DemoPass-1
    when:
      event: passing
      courses: ["course-v1:OpenedX+DemoX+Demo_Course"]
      include_ccx: true
`

// testNow is the clock of every run: after the test data's dates, before the far-future ones.
var testNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func parseMapping(t *testing.T) *rules.Mapping {
	t.Helper()
	m, err := rules.Parse([]byte(testMapping))
	if err != nil {
		t.Fatalf("mapping: %v", err)
	}
	return m
}

// recorder is a Handler that keeps the events and answers with status(ev).
type recorder struct {
	events []edx.Event
	vias   []string
	status func(edx.Event) (string, error)
}

func (r *recorder) Handle(_ context.Context, ev edx.Event, via string) (intake.Result, error) {
	r.events = append(r.events, ev)
	r.vias = append(r.vias, via)
	if r.status == nil {
		return intake.Result{Status: intake.StatusAccepted}, nil
	}
	s, err := r.status(ev)
	return intake.Result{Status: s}, err
}

// forbidden is a Handler that fails the test when called: a dry run must not record anything.
type forbidden struct{ t *testing.T }

func (f forbidden) Handle(_ context.Context, ev edx.Event, _ string) (intake.Result, error) {
	f.t.Errorf("Handle called in a dry run (user %d)", ev.UserID)
	return intake.Result{}, errors.New("dry run")
}

func run(t *testing.T, name, input string, o Options) (Summary, string, error) {
	t.Helper()
	var out bytes.Buffer
	o.Out = &out
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	sum, err := Run(context.Background(), strings.NewReader(input), name, o)
	return sum, out.String(), err
}

// noEmail fails when the report repeats any part of an address used in the tests.
func noEmail(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{"@", "alice", "bob.b", "secret"} {
		if strings.Contains(out, s) {
			t.Errorf("report contains %q (an e-mail address or part of one):\n%s", s, out)
		}
	}
}

func wantID(uid, course, issued string) string {
	sum := sha256.Sum256([]byte(uid + "|" + course + "|" + issued))
	return "backfill-" + hex.EncodeToString(sum[:16])
}

func TestCSVValidRows(t *testing.T) {
	type want struct {
		uid        int64
		email      string
		course     string
		mode, name string
		at         time.Time
	}
	at := time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC)
	tests := []struct {
		name  string
		input string
		want  []want
	}{{
		name: "five columns, shuffled",
		input: "course_key,issued_on,user_id,mode,email\n" +
			demoCourse + ",2024-05-27T12:25:45.678901Z,42,honor,alice@example.com\n" +
			"course-v1:Org+Other+2024,2024-05-27T12:25:45.678901Z,7, verified ,bob.b@example.org\n",
		want: []want{
			{42, "alice@example.com", demoCourse, "honor", "", at},
			{7, "bob.b@example.org", "course-v1:Org+Other+2024", "verified", "", at},
		},
	}, {
		name: "six columns with name, BOM, CRLF, blank lines, quoted comma",
		input: "\ufeff\r\n  \r\nname,email,user_id,issued_on,mode,course_key\r\n" +
			"\"Liddell, Alice\",alice@example.com,42,2024-05-27 12:25:45.678901+00:00,verified," + demoCourse + "\r\n" +
			"\r\n" +
			",bob.b@example.org,7,2024-05-27T12:25:45.678901Z,honor,Org/Legacy/2013\r\n",
		want: []want{
			{42, "alice@example.com", demoCourse, "verified", "Liddell, Alice", at},
			{7, "bob.b@example.org", "Org/Legacy/2013", "honor", "", at},
		},
	}, {
		name: "date formats",
		input: "user_id,email,course_key,mode,issued_on\n" +
			"1,alice@example.com," + demoCourse + ",honor,2024-05-27\n" +
			"2,alice@example.com," + demoCourse + ",honor,2024-05-27T14:25:45.678901+02:00\n" +
			"3,alice@example.com," + demoCourse + ",honor,2024-05-27 12:25:45.678901+00:00\n" +
			"4,alice@example.com," + demoCourse + ",honor,2024-05-27 12:25:45\n" +
			"5,alice@example.com," + demoCourse + ",honor,2024-05-27t12:25:45.6789019z\n",
		want: []want{
			{1, "alice@example.com", demoCourse, "honor", "", time.Date(2024, 5, 27, 0, 0, 0, 0, time.UTC)},
			{2, "alice@example.com", demoCourse, "honor", "", at},
			{3, "alice@example.com", demoCourse, "honor", "", at},
			{4, "alice@example.com", demoCourse, "honor", "", at.Truncate(time.Second)},
			{5, "alice@example.com", demoCourse, "honor", "", at}, // truncated to the microsecond
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			sum, out, err := run(t, "certs.csv", tc.input, Options{Apply: true, Handler: rec})
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, out)
			}
			n := len(tc.want)
			if want := (Summary{Lines: n, Events: n, Accepted: n}); sum != want {
				t.Errorf("Summary = %+v, want %+v\n%s", sum, want, out)
			}
			if len(rec.events) != n {
				t.Fatalf("handled %d events, want %d", len(rec.events), n)
			}
			for i, w := range tc.want {
				ev := rec.events[i]
				if ev.Type != edx.TypeCertificateCreated || ev.Kind != edx.KindCertificate || ev.Status != "downloadable" {
					t.Errorf("event %d: type %q kind %q status %q", i, ev.Type, ev.Kind, ev.Status)
				}
				if ev.Signal() != edx.SignalSupports {
					t.Errorf("event %d: signal %v, want supports", i, ev.Signal())
				}
				if ev.UserID != w.uid || ev.Email != w.email || ev.Course.Raw != w.course || ev.Mode != w.mode || ev.Name != w.name {
					t.Errorf("event %d = user %d %q course %q mode %q name %q, want %+v", i, ev.UserID, ev.Email, ev.Course.Raw, ev.Mode, ev.Name, w)
				}
				if !ev.Time.Equal(w.at) || ev.Time.Location() != time.UTC || ev.TimeMissing {
					t.Errorf("event %d: time %v (missing %v), want %v UTC", i, ev.Time, ev.TimeMissing, w.at)
				}
				if want := eventID(w.uid, w.course, w.at); ev.ID != want {
					t.Errorf("event %d: id %q, want %q", i, ev.ID, want)
				}
				if rec.vias[i] != Via {
					t.Errorf("event %d: via %q, want %q", i, rec.vias[i], Via)
				}
			}
			noEmail(t, out)
		})
	}
}

func TestCSVEventIDIsDeterministic(t *testing.T) {
	input := "user_id,email,course_key,mode,issued_on\n" +
		"42,alice@example.com," + demoCourse + ",honor,2024-05-27T12:25:45.678901Z\n" +
		"42,alice@example.com," + demoCourse + ",honor,2024-05-27T12:25:45.678901Z\n" + // the same row again
		"42,ALICE@example.com," + demoCourse + ",verified,2024-05-27 12:25:45.678901+00:00\n" + // same certificate, other export
		"43,alice@example.com," + demoCourse + ",honor,2024-05-27T12:25:45.678901Z\n" +
		"42,alice@example.com," + demoCourse + ",honor,2024-05-27T12:25:45.678902Z\n"
	var ids [][]string
	for range 2 { // a second run of the same file gives the same ids
		rec := &recorder{}
		if _, out, err := run(t, "certs.csv", input, Options{Apply: true, Handler: rec}); err != nil {
			t.Fatalf("Run: %v\n%s", err, out)
		}
		var got []string
		for _, ev := range rec.events {
			got = append(got, ev.ID)
		}
		ids = append(ids, got)
	}
	want := wantID("42", demoCourse, "2024-05-27T12:25:45.678901Z")
	got := ids[0]
	if got[0] != want || got[1] != want || got[2] != want {
		t.Errorf("ids %q, want the first three to be %q", got[:3], want)
	}
	if got[3] == want || got[4] == want || got[3] == got[4] {
		t.Errorf("another learner or time must give another id: %q", got)
	}
	if strings.Join(ids[0], ",") != strings.Join(ids[1], ",") {
		t.Errorf("second run gave other ids: %q vs %q", ids[1], ids[0])
	}
}

func TestCSVBadRowsAreReportedAndSkipped(t *testing.T) {
	const header = "user_id,email,course_key,mode,issued_on\n"
	good := func(uid string) string {
		return uid + ",alice@example.com," + demoCourse + ",honor,2024-05-27\n"
	}
	tests := []struct {
		name, row, want string
	}{
		{"bad user id", "abc,alice@example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: user_id: "abc" is not a user id (want a positive integer)`},
		{"zero user id", "0,alice@example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: user_id: "0" is not a user id`},
		{"signed user id", "+5,alice@example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: user_id: "+5" is not a user id`},
		{"e-mail in the user id column", "secret@example.com,9," + demoCourse + ",honor,2024-05-27", `certs.csv:3: user_id: (value withheld: it may be an e-mail address) is not a user id`},
		{"missing user id", " ,alice@example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: user_id: missing`},
		{"bad course key", "9,alice@example.com,course-v1:OpenedX+DemoX,honor,2024-05-27", `certs.csv:3: course_key: "course-v1:OpenedX+DemoX": expected course-v1:ORG+COURSE+RUN`},
		{"branch course key", "9,alice@example.com," + demoCourse + "+branch@draft,honor,2024-05-27", `certs.csv:3: course_key: "` + demoCourse + `+branch@draft": branch- or version-qualified keys are not accepted`},
		{"missing course key", "9,alice@example.com,,honor,2024-05-27", `certs.csv:3: course_key: missing`},
		{"e-mail without @", "9,secret.example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: email: not a plausible e-mail address`},
		{"e-mail with two @", "9,secret@person@example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: email: not a plausible e-mail address`},
		{"e-mail with a space", "9,secret person@example.com," + demoCourse + ",honor,2024-05-27", `certs.csv:3: email: not a plausible e-mail address`},
		{"missing e-mail", "9,," + demoCourse + ",honor,2024-05-27", `certs.csv:3: email: missing`},
		{"bad date", "9,alice@example.com," + demoCourse + ",honor,27/05/2024", `certs.csv:3: issued_on: "27/05/2024" is not a time (want RFC 3339, 2024-05-27 12:25:45.678901+00:00 or 2024-05-27)`},
		{"impossible date", "9,alice@example.com," + demoCourse + ",honor,2024-02-30", `certs.csv:3: issued_on: "2024-02-30" is not a time`},
		{"future date", "9,alice@example.com," + demoCourse + ",honor,2099-01-01", `certs.csv:3: issued_on: "2099-01-01" is in the future`},
		{"missing date", "9,alice@example.com," + demoCourse + ",honor,", `certs.csv:3: issued_on: missing`},
		{"missing column", "9,secret@example.com," + demoCourse + ",2024-05-27", `certs.csv:3: 4 fields, but the header has 5: a column is missing`},
		{"extra column", "9,secret@example.com," + demoCourse + ",honor,2024-05-27,Secret Person", `certs.csv:3: 6 fields, but the header has 5: extra columns`},
		{"mode too long", "9,alice@example.com," + demoCourse + "," + strings.Repeat("m", 256) + ",2024-05-27", `certs.csv:3: mode: longer than 255 characters`},
		{"bare quote", `9,secret"@example.com,` + demoCourse + ",honor,2024-05-27", `certs.csv:3: invalid CSV: bare " in non-quoted-field`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, apply := range []bool{true, false} {
				rec := &recorder{}
				o := Options{Apply: apply, Handler: rec, Mapping: parseMapping(t)}
				if !apply {
					o.Handler = forbidden{t}
				}
				input := header + good("1") + tc.row + "\n" + good("2")
				sum, out, err := run(t, "certs.csv", input, o)
				if err != nil {
					t.Fatalf("Run: %v\n%s", err, out)
				}
				if !strings.Contains("\n"+out, "\n"+tc.want) {
					t.Errorf("apply %v: report lacks %q:\n%s", apply, tc.want, out)
				}
				want := Summary{Lines: 3, Events: 2, Invalid: 1}
				if apply {
					want.Accepted = 2
					if len(rec.events) != 2 || rec.events[0].UserID != 1 || rec.events[1].UserID != 2 {
						t.Errorf("handled %+v, want users 1 and 2", rec.events)
					}
				}
				if sum != want {
					t.Errorf("apply %v: Summary = %+v, want %+v", apply, sum, want)
				}
				if !strings.Contains(out, "1 invalid line skipped") {
					t.Errorf("summary line does not count the invalid line:\n%s", out)
				}
				noEmail(t, strings.ReplaceAll(out, "+branch@", "+"))
			}
		})
	}
}

func TestCSVBadRowsKeepTheirLineNumbers(t *testing.T) {
	input := "\n\nuser_id,email,course_key,mode,issued_on\n" + // header on line 3
		"x,alice@example.com," + demoCourse + ",honor,2024-05-27\n" + // 4
		"\"5\",alice@example.com,\"" + demoCourse + "\",honor,\"2024-05-27\n\"\n" + // 5-6: a quoted line break
		",,,,\n" + // 7: an empty spreadsheet row, skipped
		"6,alice@example.com,nope,honor,2024-05-27\n" // 8
	sum, out, err := run(t, "certs.csv", input, Options{Apply: true, Handler: &recorder{}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, want := range []string{"certs.csv:4: user_id:", "certs.csv:8: course_key:"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if want := (Summary{Lines: 3, Events: 1, Accepted: 1, Invalid: 2}); sum != want {
		t.Errorf("Summary = %+v, want %+v", sum, want)
	}
}

func TestCSVHeaderErrorsStopBeforeAnyRow(t *testing.T) {
	row := "42,secret@example.com," + demoCourse + ",honor,2024-05-27\n"
	tests := []struct {
		name, input, want string
	}{
		{"extra column", "user_id,email,course_key,mode,issued_on,score,Score\n" + row,
			`certs.csv:1: header: unknown column(s) "score", "Score" (want user_id,email,course_key,mode,issued_on[,name][,grade], in any order)`},
		{"missing columns", "\nuser_id,email,course_key\n" + row, `certs.csv:2: header: missing column(s) mode, issued_on`},
		{"column twice", "user_id,email,course_key,mode,issued_on,email\n" + row, `certs.csv:1: header: column(s) given twice: email`},
		{"no header", row + row, `certs.csv:1: header: the first line is not the CSV header user_id,email,course_key,mode,issued_on[,name][,grade]`},
		{"empty file", "", `certs.csv: the file is empty`},
		{"blank lines only", "\n  \r\n\n", `certs.csv: the file is empty`},
		{"bad header quoting", "user_id,\"email,course_key\n", `certs.csv:1: header: invalid CSV`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sum, out, err := run(t, "certs.csv", tc.input, Options{Apply: true, Handler: forbidden{t}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if sum != (Summary{}) || out != "" {
				t.Errorf("Summary %+v and report %q, want nothing", sum, out)
			}
			noEmail(t, err.Error())
		})
	}
}

// jsonlFixture builds JSON Lines from the webhook examples, one compact body per line.
func jsonlFixture(t *testing.T) (string, []string) {
	t.Helper()
	compact := func(b []byte) string {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "edx", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	created := read("certificate-created.json")
	unsupported := bytes.Replace(created, []byte(edx.TypeCertificateCreated), []byte("org.openedx.learning.badge.awarded.v1"), 1)
	noEmail := bytes.Replace(read("passing-status.json"), []byte(`"email": "alice@example.com",`), nil, 1)
	lines := []string{
		compact(read("certificate-created.cloudevent.json")), // 1
		compact(read("certificate-created.flattened.json")),  // 2
		"",               // 3
		compact(created), // 4
		compact(read("certificate-revoked.json")), // 5
		compact(read("passing-status.json")),      // 6
		"   ",                                     // 7
		compact(unsupported),                      // 8
		`{"event_metadata": {"event_type": 1}}`,   // 9
		`{not json`,                               // 10
		compact(noEmail),                          // 11
		"[1, 2]",                                  // 12
	}
	return strings.Join(lines, "\r\n") + "\n", lines
}

func TestJSONLinesDryRun(t *testing.T) {
	input, _ := jsonlFixture(t)
	sum, out, err := run(t, "events.jsonl", input, Options{Mapping: parseMapping(t), Handler: forbidden{t}})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	wantLines := []string{
		"line 1: user 42, " + demoCourse + ": would hold DemoBadge-1 (Demo completion)",
		"line 2: user 42, " + demoCourse + ": would hold DemoBadge-1 (Demo completion)",
		"line 4: user 42, " + demoCourse + ": would hold DemoBadge-1 (Demo completion)",
		"line 5: user 42, " + demoCourse + ": would not hold DemoBadge-1 (Demo completion; Demo verified)",
		"line 6: user 42, " + demoCourse + ": would hold DemoPass-1 (Demo passing)",
		`line 8: ignored: unsupported event type "org.openedx.learning.badge.awarded.v1"`,
		`events.jsonl:9: event_metadata.event_type: expected a string, got a number`,
		`events.jsonl:10: body: `,
		`events.jsonl:11: course_passing_status.user.pii.email: missing`,
		`events.jsonl:12: body: `,
		"events.jsonl: 10 lines, 6 events: 5 with a mapped badge, 1 ignored; 4 invalid lines skipped",
		DryRunNote,
	}
	for _, w := range wantLines {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", out)
	}
	if want := (Summary{Lines: 10, Events: 6, Ignored: 1, Invalid: 4}); sum != want {
		t.Errorf("Summary = %+v, want %+v", sum, want)
	}
	noEmail(t, out)
}

func TestJSONLinesApply(t *testing.T) {
	input, _ := jsonlFixture(t)
	rec := &recorder{}
	sum, out, err := run(t, "events.jsonl", input, Options{Apply: true, Handler: rec})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	if want := (Summary{Lines: 10, Events: 6, Accepted: 5, Ignored: 1, Invalid: 4}); sum != want {
		t.Errorf("Summary = %+v, want %+v", sum, want)
	}
	wantTypes := []string{edx.TypeCertificateCreated, edx.TypeCertificateCreated, edx.TypeCertificateCreated,
		edx.TypeCertificateRevoked, edx.TypePassingStatus}
	if len(rec.events) != len(wantTypes) {
		t.Fatalf("handled %d events, want %d", len(rec.events), len(wantTypes))
	}
	for i, ev := range rec.events {
		if ev.Type != wantTypes[i] || ev.UserID != 42 || ev.Course.Raw != demoCourse {
			t.Errorf("event %d: %s user %d %s", i, ev.Type, ev.UserID, ev.Course.Raw)
		}
	}
	// The ids are the senders': the same body sent live and in a backfill is one event.
	if rec.events[0].ID != "3e068212-1c24-11ef-9a57-0242ac120005" || rec.events[3].ID != "1493b200-2189-11ef-9a57-0242ac120005" {
		t.Errorf("ids %q, %q: not the bodies' ids", rec.events[0].ID, rec.events[3].ID)
	}
	if strings.Contains(out, "line 1:") || strings.Contains(out, DryRunNote) {
		t.Errorf("an applied run printed dry-run verdicts:\n%s", out)
	}
	if !strings.Contains(out, "events.jsonl: 10 lines, 6 events: 5 accepted, 0 unchanged, 0 duplicate, 1 ignored; 4 invalid lines skipped\n") {
		t.Errorf("summary line missing:\n%s", out)
	}
	noEmail(t, out)
}

func TestJSONLinesOverlongLine(t *testing.T) {
	created, err := os.ReadFile(filepath.Join("..", "edx", "testdata", "certificate-created.json"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, created); err != nil {
		t.Fatal(err)
	}
	long := `{"pad": "` + strings.Repeat("x", maxLineBytes) + `"}`
	input := long + "\n" + buf.String() + "\n" + long // the last line has no line ending
	rec := &recorder{}
	sum, out, err := run(t, "big.jsonl", input, Options{Apply: true, Handler: rec})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := (Summary{Lines: 3, Events: 1, Accepted: 1, Invalid: 2}); sum != want || len(rec.events) != 1 {
		t.Errorf("Summary = %+v (handled %d), want %+v", sum, len(rec.events), want)
	}
	for _, w := range []string{"big.jsonl:1: longer than 1 MiB", "big.jsonl:3: longer than 1 MiB"} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q", w)
		}
	}
}

func TestDryRunVerdicts(t *testing.T) {
	input := "user_id,email,course_key,mode,issued_on,name\n" +
		"1,alice@example.com," + demoCourse + ",honor,2024-05-27,Alice\n" +
		"2,bob.b@example.org,course-v1:OpenedX+DemoX+2025,verified,2024-05-27,Bob\n" +
		"3,alice@example.com," + demoCourse + ",audit,2024-05-27,\n" +
		"4,alice@example.com,course-v1:Other+Course+Run,honor,2024-05-27,\n" +
		"5,alice@example.com,ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3,honor,2024-05-27,\n"
	sum, out, err := run(t, "certs.csv", input, Options{Mapping: parseMapping(t), Handler: forbidden{t}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := "line 2: user 1, " + demoCourse + ": would hold DemoBadge-1 (Demo completion)\n" +
		"line 3: user 2, course-v1:OpenedX+DemoX+2025: would hold DemoBadge-1 (Demo completion; Demo verified)\n" +
		"line 4: user 3, " + demoCourse + ": no badge mapped\n" +
		"line 5: user 4, course-v1:Other+Course+Run: no badge mapped\n" +
		"line 6: user 5, ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3: no badge mapped\n" +
		"certs.csv: 5 lines, 5 events: 2 with a mapped badge, 3 ignored; 0 invalid lines skipped\n" +
		"\n" + DryRunNote + "\n"
	if out != want {
		t.Errorf("report:\n%s\nwant:\n%s", out, want)
	}
	if want := (Summary{Lines: 5, Events: 5, Ignored: 3}); sum != want {
		t.Errorf("Summary = %+v, want %+v", sum, want)
	}
}

func TestDryRunWithoutMappingOrHandler(t *testing.T) {
	input := "user_id,email,course_key,mode,issued_on\n1,alice@example.com," + demoCourse + ",honor,2024-05-27\n"
	sum, out, err := run(t, "certs.csv", input, Options{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(out, "line 2: user 1, "+demoCourse+": no badge mapped\n") || sum.Ignored != 1 {
		t.Errorf("Summary %+v, report:\n%s", sum, out)
	}
}

func TestApplyCountsStatuses(t *testing.T) {
	statuses := map[int64]string{
		1: intake.StatusAccepted, 2: intake.StatusUnchanged, 3: intake.StatusDuplicate,
		4: intake.StatusIgnored, 5: intake.StatusAccepted,
	}
	rec := &recorder{status: func(ev edx.Event) (string, error) { return statuses[ev.UserID], nil }}
	var b strings.Builder
	b.WriteString("user_id,email,course_key,mode,issued_on\n")
	for _, uid := range []string{"1", "2", "x", "3", "4", "5"} {
		b.WriteString(uid + ",alice@example.com," + demoCourse + ",honor,2024-05-27\n")
	}
	sum, out, err := run(t, "certs.csv", b.String(), Options{Apply: true, Handler: rec, Mapping: parseMapping(t)})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := (Summary{Lines: 6, Events: 5, Accepted: 2, Unchanged: 1, Duplicate: 1, Ignored: 1, Invalid: 1}); sum != want {
		t.Errorf("Summary = %+v, want %+v", sum, want)
	}
	want := "certs.csv:4: user_id: \"x\" is not a user id (want a positive integer)\n" +
		"certs.csv: 6 lines, 5 events: 2 accepted, 1 unchanged, 1 duplicate, 1 ignored; 1 invalid line skipped\n"
	if out != want {
		t.Errorf("report:\n%s\nwant:\n%s", out, want)
	}
}

func TestApplyStopsAtHandlerError(t *testing.T) {
	errDown := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	rec := &recorder{status: func(ev edx.Event) (string, error) {
		if ev.UserID == 3 {
			return "", errDown
		}
		return intake.StatusAccepted, nil
	}}
	var b strings.Builder
	b.WriteString("user_id,email,course_key,mode,issued_on\n")
	for _, uid := range []string{"1", "2", "3", "4"} {
		b.WriteString(uid + ",alice@example.com," + demoCourse + ",honor,2024-05-27\n")
	}
	sum, out, err := run(t, "certs.csv", b.String(), Options{Apply: true, Handler: rec})
	if !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want the handler's error", err)
	}
	for _, w := range []string{"certs.csv:4: ", "running the same file again is safe"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if len(rec.events) != 3 {
		t.Errorf("handler called %d times, want 3 (no call after the failure)", len(rec.events))
	}
	if want := (Summary{Lines: 3, Events: 3, Accepted: 2}); sum != want {
		t.Errorf("Summary = %+v, want %+v", sum, want)
	}
	if !strings.Contains(out, "certs.csv: 3 lines, 3 events: 2 accepted") {
		t.Errorf("no summary of the partial run:\n%s", out)
	}
	noEmail(t, err.Error())
}

func TestApplyUnknownStatusStops(t *testing.T) {
	rec := &recorder{status: func(edx.Event) (string, error) { return "maybe", nil }}
	input := "user_id,email,course_key,mode,issued_on\n1,alice@example.com," + demoCourse + ",honor,2024-05-27\n"
	if _, _, err := run(t, "certs.csv", input, Options{Apply: true, Handler: rec}); err == nil || !strings.Contains(err.Error(), `unknown status "maybe"`) {
		t.Errorf("err = %v, want unknown status", err)
	}
}

func TestApplyNeedsHandler(t *testing.T) {
	if _, _, err := run(t, "certs.csv", "", Options{Apply: true}); err == nil {
		t.Error("Run with Apply and no handler succeeded")
	}
}

func TestCanceledContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{status: func(edx.Event) (string, error) {
		cancel()
		return intake.StatusAccepted, nil
	}}
	input := "user_id,email,course_key,mode,issued_on\n" +
		"1,alice@example.com," + demoCourse + ",honor,2024-05-27\n" +
		"2,alice@example.com," + demoCourse + ",honor,2024-05-27\n"
	var out bytes.Buffer
	sum, err := Run(ctx, strings.NewReader(input), "certs.csv", Options{Apply: true, Handler: rec, Out: &out})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "certs.csv: stopped after line 2") {
		t.Errorf("err = %v, want canceled after line 2", err)
	}
	if len(rec.events) != 1 || sum.Accepted != 1 {
		t.Errorf("handled %d, Summary %+v: want one event", len(rec.events), sum)
	}
}

func TestProgress(t *testing.T) {
	var b strings.Builder
	b.WriteString("user_id,email,course_key,mode,issued_on\n")
	for _, uid := range []string{"1", "2", "3", "4", "5"} {
		b.WriteString(uid + ",alice@example.com," + demoCourse + ",honor,2024-05-27\n")
	}
	b.WriteString("\n") // a trailing blank line still counts as read at the end
	input := b.String()

	t.Run("seekable file shows a bar", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "certs.csv")
		if err := os.WriteFile(path, []byte(input), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out, bar bytes.Buffer
		sum, err := Run(context.Background(), f, "certs.csv", Options{
			Mapping: parseMapping(t), Out: &out, Progress: &bar, Now: func() time.Time { return testNow },
		})
		if err != nil || sum.Events != 5 {
			t.Fatalf("Run: %v, Summary %+v", err, sum)
		}
		got := bar.String()
		want := "\r[" + strings.Repeat("#", 30) + "] 7/7 lines"
		if !strings.Contains(got, want) || !strings.HasSuffix(got, "\n") {
			t.Errorf("bar %q lacks the final %q", got, want)
		}
		if !strings.Contains(got, "\r[") || strings.Contains(out.String(), "\r") {
			t.Errorf("bar %q / report %q mixed up", got, out.String())
		}
	})
	t.Run("stream shows a count", func(t *testing.T) {
		var bar bytes.Buffer
		sum, err := Run(context.Background(), strings.NewReader(input), "-", Options{
			Apply: true, Handler: &recorder{}, Progress: &bar, Now: func() time.Time { return testNow },
		})
		if err != nil || sum.Accepted != 5 {
			t.Fatalf("Run: %v, Summary %+v", err, sum)
		}
		if got := bar.String(); !strings.HasSuffix(got, "6 lines\n") || strings.Contains(got, "[") {
			t.Errorf("bar %q, want a plain count ending in 6 lines", got)
		}
	})
}

// A backfill row's name meets the same limits as an event's: it goes into the award text.
func TestCSVNameLimits(t *testing.T) {
	input := "user_id,email,course_key,mode,issued_on,name\n" +
		"1,alice@example.com," + demoCourse + ",honor,2024-05-27,Alice \u202eecilA\n" +
		"2,bob@example.com," + demoCourse + ",honor,2024-05-27," + strings.Repeat("B", 256) + "\n" +
		"3,carol@example.com," + demoCourse + ",honor,2024-05-27,Carol\n"
	rec := &recorder{}
	sum, out, err := run(t, "certs.csv", input, Options{Apply: true, Handler: rec, Mapping: parseMapping(t)})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	for _, want := range []string{"certs.csv:2: name: contains U+202E", "certs.csv:3: name: longer than 255 characters"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if sum.Invalid != 2 || len(rec.events) != 1 || rec.events[0].Name != "Carol" {
		t.Fatalf("summary %+v, handled %+v", sum, rec.events)
	}
}

// The optional grade column reaches the event (rules with min_grade read it); a grade that is not
// a decimal in 0–1 is refused with the column named.
func TestCSVGradeColumn(t *testing.T) {
	input := "user_id,email,course_key,mode,issued_on,grade\n" +
		"1,alice@example.com," + demoCourse + ",honor,2024-05-27,0.93\n" +
		"2,bob@example.com," + demoCourse + ",honor,2024-05-27,93%\n"
	rec := &recorder{}
	sum, out, err := run(t, "certs.csv", input, Options{Apply: true, Handler: rec, Mapping: parseMapping(t)})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	if !strings.Contains(out, `certs.csv:3: grade: "93%" is not a grade`) {
		t.Errorf("report lacks the bad grade:\n%s", out)
	}
	if sum.Invalid != 1 || len(rec.events) != 1 || rec.events[0].Grade != "0.93" {
		t.Fatalf("summary %+v, handled %+v", sum, rec.events)
	}
}
