package edx

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const demoCourse = "course-v1:OpenedX+DemoX+Demo_Course"

var received = time.Date(2024, 5, 27, 13, 0, 0, 123456789, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func demoKey(t testing.TB) CourseKey {
	t.Helper()
	k, err := ParseCourseKey(demoCourse)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// createdEvent is what every certificate-created example carries.
func createdEvent(t testing.TB, at string) Event {
	return Event{
		ID: "3e068212-1c24-11ef-9a57-0242ac120005", Type: TypeCertificateCreated, Kind: KindCertificate,
		Time: mustTime(t, at), Source: "openedx/lms/web",
		UserID: 42, Username: "alice", Email: "alice@example.com", Name: "Alice Liddell",
		Course: demoKey(t), Mode: "honor", Grade: "0.87", Status: "downloadable",
	}
}

func TestParseWebhookExamples(t *testing.T) {
	tests := []struct {
		file, contentType string
		want              Event
	}{
		{"certificate-created.json", "application/json", createdEvent(t, "2024-05-27T12:25:45.678901Z")},
		{"certificate-created.cloudevent.json", "application/cloudevents+json; charset=utf-8", createdEvent(t, "2024-05-27T12:25:45.678901Z")},
		{"certificate-created.flattened.json", "application/json", createdEvent(t, "2024-05-27T12:25:45.678Z")},
		{"certificate-created.flattened.form", "application/x-www-form-urlencoded", createdEvent(t, "2024-05-27T12:25:45.678901Z")},
		{"certificate-revoked.json", "application/json; charset=UTF-8", Event{
			ID: "1493b200-2189-11ef-9a57-0242ac120005", Type: TypeCertificateRevoked, Kind: KindCertificate,
			Time: mustTime(t, "2024-06-03T09:10:11.123456Z"), Source: "openedx/lms/web",
			UserID: 42, Username: "alice", Email: "alice@example.com", Name: "Alice Liddell",
			Course: demoKey(t), Mode: "honor", Grade: "", Status: "unavailable",
		}},
		{"passing-status.json", "application/json", Event{
			ID: "3ab6d080-1c24-11ef-9a57-0242ac120005", Type: TypePassingStatus, Kind: KindPassing,
			Time: mustTime(t, "2024-05-27T12:25:40.123456Z"), Source: "openedx/lms/web",
			UserID: 42, Username: "alice", Email: "alice@example.com", Name: "Alice Liddell",
			Course: demoKey(t), IsPassing: true,
		}},
		// A sender that sets no content type: sniffed as JSON.
		{"certificate-created.json", "", createdEvent(t, "2024-05-27T12:25:45.678901Z")},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.contentType, func(t *testing.T) {
			ev, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Body: readTestdata(t, tt.file), Received: received})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if !reflect.DeepEqual(ev, tt.want) {
				t.Errorf("got  %+v\nwant %+v", ev, tt.want)
			}
			if ev.Time.Location() != time.UTC {
				t.Errorf("Time %v is not in UTC", ev.Time)
			}
		})
	}
}

func TestParseWebhookCloudEventBinary(t *testing.T) {
	body := `{"certificate": {"user": {"id": "42", "pii": {"username": "alice", "email": "alice@example.com", "name": ""}},
		"course": {"course_key": "course-v1:OpenedX+DemoX+Demo_Course"}, "mode": "verified", "grade": 0.9,
		"name": "Alice L.", "current_status": "generating"}}`
	h := http.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-type", TypeCertificateChanged)
	h.Set("ce-id", "abc-1")
	h.Set("ce-source", "openedx/lms/web")
	h.Set("ce-time", "2024-05-27T14:25:45.1234567+02:00")
	ev, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Header: h, Body: []byte(body), Received: received})
	if err != nil {
		t.Fatalf("ParseWebhook: %v", err)
	}
	want := Event{
		ID: "abc-1", Type: TypeCertificateChanged, Kind: KindCertificate,
		Time: mustTime(t, "2024-05-27T12:25:45.123456Z"), Source: "openedx/lms/web",
		UserID: 42, Username: "alice", Email: "alice@example.com", Name: "Alice L.",
		Course: demoKey(t), Mode: "verified", Grade: "0.9", Status: "generating",
	}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("got  %+v\nwant %+v", ev, want)
	}

	// A bad header is reported under its metadata path, naming the header.
	h.Set("ce-time", "yesterday")
	_, err = ParseWebhook(WebhookRequest{ContentType: "application/json", Header: h, Body: []byte(body)})
	wantError(t, err, "event_metadata.time (header ce-time): \"yesterday\" is not a time")
}

func TestParseWebhookCCXPassing(t *testing.T) {
	body := func(master string) string {
		return `{"event_metadata": {"event_type": "org.openedx.learning.ccx.course.passing.status.updated.v1",
			"id": "e1", "time": "2024-05-27 12:25:40.5"},
		"course_passing_status": {"is_passing": "False",
			"user": {"id": 42, "is_active": true, "pii": {"username": "alice", "email": "alice@example.com", "name": "Alice"}},
			"course": {"ccx_course_key": "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3", ` + master + `
				"display_name": "", "coach_email": "coach@example.com", "start": null, "end": null, "max_students_allowed": 200}}}`
	}
	for _, tt := range []struct{ name, master, wantMaster string }{
		{"given", `"master_course_key": "course-v1:OpenedX+DemoX+Demo_Course",`, demoCourse},
		{"missing", ``, demoCourse},
		{"invalid", `"master_course_key": "nonsense",`, demoCourse},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(body(tt.master)), Received: received})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if ev.Kind != KindPassing || ev.IsPassing || ev.Signal() != SignalFailing {
				t.Errorf("Kind %v IsPassing %v Signal %v", ev.Kind, ev.IsPassing, ev.Signal())
			}
			if ev.Course.Raw != "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3" || ev.Course.Style != StyleCCXV1 || ev.Course.CCX != "3" {
				t.Errorf("Course = %+v", ev.Course)
			}
			if ev.Course.Master == nil || ev.Course.Master.Raw != tt.wantMaster {
				t.Errorf("Master = %+v", ev.Course.Master)
			}
			if !ev.Time.Equal(mustTime(t, "2024-05-27T12:25:40.5Z")) || ev.TimeMissing {
				t.Errorf("Time = %v (missing %v)", ev.Time, ev.TimeMissing)
			}
		})
	}
}

func TestParseWebhookFlattenedCCX(t *testing.T) {
	body := "event_metadata_event_type=org.openedx.learning.ccx.course.passing.status.updated.v1" +
		"&course_passing_status_is_passing=1&course_passing_status_user_id=42" +
		"&course_passing_status_user_pii_email=alice%40example.com" +
		"&course_passing_status_course_ccx_course_key=ccx-v1%3AOpenedX%2BDemoX%2BDemo_Course%2Bccx%403" +
		"&course_passing_status_course_master_course_key=course-v1%3AOpenedX%2BDemoX%2BDemo_Course"
	ev, err := ParseWebhook(WebhookRequest{ContentType: "application/x-www-form-urlencoded", Body: []byte(body), Received: received})
	if err != nil {
		t.Fatalf("ParseWebhook: %v", err)
	}
	if !ev.IsPassing || ev.Course.CCX != "3" || ev.Course.Master == nil || ev.Course.Master.Raw != demoCourse {
		t.Errorf("got %+v", ev)
	}
	if !ev.TimeMissing || !ev.Time.Equal(received.Truncate(time.Microsecond)) || ev.ID != "" {
		t.Errorf("Time %v missing %v ID %q; want the receive time and no id", ev.Time, ev.TimeMissing, ev.ID)
	}
}

func TestParseWebhookLeniency(t *testing.T) {
	base := func(user, status, meta string) string {
		return `{"event_metadata": {"event_type": "org.openedx.learning.certificate.changed.v1"` + meta + `},
			"certificate": {"user": {"id": ` + user + `, "pii": {"email": "alice@example.com"}},
			"course": {"course_key": "edX/DemoX/Demo_Course"}, "current_status": "` + status + `"}}`
	}
	tests := []struct {
		name, body string
		check      func(t *testing.T, ev Event)
	}{
		{"user id as string", base(`"42"`, "downloadable", ""), func(t *testing.T, ev Event) {
			if ev.UserID != 42 || ev.Course.Style != StyleSlash {
				t.Errorf("got %+v", ev)
			}
		}},
		{"no time, no id", base(`7`, "notpassing", ""), func(t *testing.T, ev Event) {
			if !ev.TimeMissing || ev.ID != "" || !ev.Time.Equal(received.Truncate(time.Microsecond)) {
				t.Errorf("got %+v", ev)
			}
		}},
		{"naive time is UTC", base(`7`, "notpassing", `, "time": "2024-05-27T12:25:45"`), func(t *testing.T, ev Event) {
			if !ev.Time.Equal(mustTime(t, "2024-05-27T12:25:45Z")) {
				t.Errorf("Time = %v", ev.Time)
			}
		}},
		{"offset without colon, many digits", base(`7`, "notpassing", `, "time": "2024-05-27 14:25:45.1234569+0200"`), func(t *testing.T, ev Event) {
			if !ev.Time.Equal(mustTime(t, "2024-05-27T12:25:45.123456Z")) {
				t.Errorf("Time = %v", ev.Time)
			}
		}},
		{"sourcelib as string", base(`7`, "error", `, "sourcelib": "11.2.0"`), func(t *testing.T, ev Event) {
			if ev.Signal() != SignalNone {
				t.Errorf("Signal = %v", ev.Signal())
			}
		}},
		{"unknown fields ignored", base(`7`, "downloadable", `, "extra": {"a": [1, {"b": null}]}`), func(t *testing.T, ev Event) {
			if ev.Signal() != SignalSupports {
				t.Errorf("Signal = %v", ev.Signal())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(tt.body), Received: received})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			tt.check(t, ev)
		})
	}
}

func TestParseWebhookBooleans(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{`true`, true}, {`false`, false}, {`"true"`, true}, {`"False"`, false}, {`"True"`, true},
		{`1`, true}, {`0`, false}, {`"1"`, true}, {`"0"`, false},
	} {
		t.Run(tt.value, func(t *testing.T) {
			body := strings.Replace(string(readTestdata(t, "passing-status.json")), `"is_passing": true`, `"is_passing": `+tt.value, 1)
			ev, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(body)})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if ev.IsPassing != tt.want {
				t.Errorf("IsPassing = %v, want %v", ev.IsPassing, tt.want)
			}
		})
	}
}

// wantError checks that err is a *FieldError with the given message prefix.
func wantError(t *testing.T, err error, prefix string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want a *FieldError", err, err)
	}
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q\nwant prefix  %q", err, prefix)
	}
	if strings.Contains(err.Error(), "alice@") {
		t.Errorf("error %q repeats an e-mail address", err)
	}
}

func TestParseWebhookMalformed(t *testing.T) {
	created := string(readTestdata(t, "certificate-created.json"))
	form := string(readTestdata(t, "certificate-created.flattened.form"))
	flatJSON := string(readTestdata(t, "certificate-created.flattened.json"))
	edit := func(body, old, new string) string {
		t.Helper()
		if !strings.Contains(body, old) {
			t.Fatalf("%q not in body", old)
		}
		return strings.Replace(body, old, new, 1)
	}
	tests := []struct {
		name, contentType, body, want string
	}{
		{"missing email", "application/json", edit(created, `"email": "alice@example.com",`, ``),
			"certificate.user.pii.email: missing"},
		{"empty email", "application/json", edit(created, `"email": "alice@example.com"`, `"email": " "`),
			"certificate.user.pii.email: missing"},
		{"implausible email", "application/json", edit(created, `"email": "alice@example.com"`, `"email": "alice@@example.com"`),
			"certificate.user.pii.email: not a plausible e-mail address"},
		{"email with space", "application/json", edit(created, `"email": "alice@example.com"`, `"email": "alice smith@example.com"`),
			"certificate.user.pii.email: not a plausible e-mail address"},
		{"email not a string", "application/json", edit(created, `"email": "alice@example.com"`, `"email": ["alice@example.com"]`),
			"certificate.user.pii.email: expected a string, got a list"},
		{"missing user id", "application/json", edit(created, `"id": 42,`, ``),
			"certificate.user.id: missing"},
		{"user id as bool", "application/json", edit(created, `"id": 42`, `"id": true`),
			"certificate.user.id: expected a number, got a boolean"},
		{"user id as object", "application/json", edit(created, `"id": 42`, `"id": {}`),
			"certificate.user.id: expected a number, got an object"},
		{"user id fraction", "application/json", edit(created, `"id": 42`, `"id": 42.5`),
			`certificate.user.id: "42.5" is not a user id (want a positive integer)`},
		{"user id negative", "application/json", edit(created, `"id": 42`, `"id": "-1"`),
			`certificate.user.id: "-1" is not a user id`},
		{"user id too large", "application/json", edit(created, `"id": 42`, `"id": 99999999999999999999`),
			`certificate.user.id: "99999999999999999999" is not a user id`},
		{"user not an object", "application/json", edit(created, `"user": {`, `"user": "x", "u": {`),
			"certificate.user: expected an object, got a string"},
		{"missing course key", "application/json", edit(created, `"course_key": "course-v1:OpenedX+DemoX+Demo_Course",`, ``),
			"certificate.course.course_key: missing"},
		{"bad course key", "application/json", edit(created, demoCourse, "course-v1:OpenedX+DemoX"),
			`certificate.course.course_key: "course-v1:OpenedX+DemoX": expected course-v1:ORG+COURSE+RUN`},
		{"missing status", "application/json", edit(created, `"current_status": "downloadable",`, ``),
			"certificate.current_status: missing"},
		{"missing payload", "application/json", `{"event_metadata": {"event_type": "org.openedx.learning.certificate.created.v1"}}`,
			"certificate: missing"},
		{"payload of the other kind", "application/json", edit(created, `"certificate": {`, `"course_passing_status": {`),
			"certificate: missing"},
		{"missing is_passing", "application/json", edit(string(readTestdata(t, "passing-status.json")), `"is_passing": true,`, ``),
			"course_passing_status.is_passing: missing"},
		{"bad bool", "application/json", edit(string(readTestdata(t, "passing-status.json")), `"is_passing": true`, `"is_passing": "yes"`),
			`course_passing_status.is_passing: "yes" is not a boolean (want true/false, True/False or 1/0)`},
		{"bad bool number", "application/json", edit(string(readTestdata(t, "passing-status.json")), `"is_passing": true`, `"is_passing": 2`),
			`course_passing_status.is_passing: "2" is not a boolean`},
		{"bad time", "application/json", edit(created, `"time": "2024-05-27T12:25:45.678901+00:00"`, `"time": "xyz"`),
			`event_metadata.time: "xyz" is not a time (want RFC 3339 or 2024-05-27 12:25:45.678901+00:00)`},
		{"time as number", "application/json", edit(created, `"time": "2024-05-27T12:25:45.678901+00:00"`, `"time": 1716812745`),
			`event_metadata.time: "1716812745" is not a time`},
		{"missing event type", "application/json", edit(created, `"event_type": "org.openedx.learning.certificate.created.v1",`, ``),
			"event_metadata.event_type: missing"},
		{"no metadata", "application/json", `{"certificate": {}}`, "event_metadata.event_type: missing"},
		{"empty object", "application/json", `{}`, "event_metadata.event_type: missing"},
		{"event type not a string", "application/json", edit(created, `"event_type": "org.openedx.learning.certificate.created.v1"`, `"event_type": 5`),
			`event_metadata.event_type: expected a string, got a number`},
		{"id too long", "application/json", edit(created, `"id": "3e068212-1c24-11ef-9a57-0242ac120005"`, `"id": "`+strings.Repeat("x", 201)+`"`),
			"event_metadata.id: longer than 200 bytes"},
		{"duplicate key", "application/json", edit(created, `"email": "alice@example.com",`, `"email": "alice@example.com", "email": "mallory@example.com",`),
			"certificate.user.pii.email: given more than once"},
		{"invalid UTF-8", "application/json", edit(created, `"username": "alice"`, "\"username\": \"al\xffice\""),
			"certificate.user.pii.username: not valid UTF-8"},
		{"invalid JSON", "application/json", edit(created, `"mode": "honor",`, `"mode": "honor",,`),
			"body: invalid JSON at offset"},
		{"truncated JSON", "application/json", created[:100], "body: invalid JSON: unexpected end at offset 100"},
		{"not an object", "application/json", `[1, 2]`, "body: expected a JSON object"},
		{"empty body", "application/json", ``, "body: empty"},
		{"trailing data", "application/json", created + `{}`, "body: unexpected data after the JSON object"},
		{"deep nesting", "application/json", `{"event_metadata": ` + strings.Repeat(`{"a": `, 40) + `1` + strings.Repeat(`}`, 41),
			"body: nested deeper than 32 levels"},
		{"deep arrays", "application/json", `{"x": ` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`,
			"body: nested deeper than 32 levels"},
		{"flattened missing email", "application/x-www-form-urlencoded", edit(form, "certificate_user_pii_email=alice%40example.com&", ""),
			"certificate.user.pii.email (certificate_user_pii_email): missing"},
		{"flattened bad bool", "application/x-www-form-urlencoded",
			"event_metadata_event_type=" + TypePassingStatus + "&course_passing_status_is_passing=maybe&course_passing_status_user_id=42" +
				"&course_passing_status_user_pii_email=a%40b&course_passing_status_course_course_key=a%2Fb%2Fc",
			`course_passing_status.is_passing (course_passing_status_is_passing): "maybe" is not a boolean`},
		{"flattened bad time", "application/x-www-form-urlencoded", edit(form, "event_metadata_time=2024-05-27+12", "event_metadata_time=2024-13-27+12"),
			`event_metadata.time (event_metadata_time): "2024-13-27 12:25:45.678901+00:00" is not a time`},
		{"flattened repeated key", "application/x-www-form-urlencoded", form + "&certificate_user_id=43",
			"certificate.user.id (certificate_user_id): given 2 times"},
		{"flattened unescaped plus", "application/x-www-form-urlencoded", edit(form, "%2BDemoX%2B", "+DemoX+"),
			`certificate.course.course_key (certificate_course_course_key): "course-v1:OpenedX DemoX Demo_Course": expected course-v1:ORG+COURSE+RUN (in a form body, "+" must be sent as %2B)`},
		{"flattened missing type", "application/x-www-form-urlencoded", edit(form, "event_metadata_event_type=org.openedx.learning.certificate.created.v1&", ""),
			"event_metadata.event_type (event_metadata_event_type): missing"},
		{"flattened invalid UTF-8", "application/x-www-form-urlencoded", edit(form, "certificate_user_pii_name=Alice+Liddell", "certificate_user_pii_name=Al%FFice"),
			"certificate.user.pii.name (certificate_user_pii_name): not valid UTF-8"},
		{"bad form encoding", "application/x-www-form-urlencoded", "a=%zz", "body: invalid form encoding"},
		{"flattened JSON wrong-typed user id", "application/json", edit(flatJSON, `"certificate_user_id": 42`, `"certificate_user_id": false`),
			"certificate.user.id (certificate_user_id): expected a number, got a boolean"},
		{"cloudevent missing data", "application/cloudevents+json", `{"specversion": "1.0", "type": "` + TypeCertificateCreated + `", "id": "x"}`,
			"certificate (data.certificate): missing"},
		{"cloudevent data not an object", "application/cloudevents+json", `{"type": "` + TypeCertificateCreated + `", "data": "x"}`,
			"data: expected an object, got a string"},
		{"cloudevent missing email", "application/cloudevents+json", edit(string(readTestdata(t, "certificate-created.cloudevent.json")), `"email": "alice@example.com",`, ``),
			"certificate.user.pii.email (data.certificate.user.pii.email): missing"},
		{"cloudevent bad time", "application/cloudevents+json", edit(string(readTestdata(t, "certificate-created.cloudevent.json")), `"time": "2024-05-27T12:25:45.678901+00:00"`, `"time": "2024-05-27T25:00:00Z"`),
			`event_metadata.time (time): "2024-05-27T25:00:00Z" is not a time`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Body: []byte(tt.body), Received: received})
			wantError(t, err, tt.want)
		})
	}
}

func TestParseWebhookUnsupportedType(t *testing.T) {
	const other = "org.openedx.learning.course.unenrollment.completed.v1"
	tests := []struct{ name, contentType, body string }{
		{"json", "application/json", `{"event_metadata": {"event_type": "` + other + `"}, "enrollment": {}}`},
		{"cloudevent", "application/cloudevents+json", `{"specversion": "1.0", "type": "` + other + `", "data": {}}`},
		{"flattened json", "application/json", `{"event_metadata_event_type": "` + other + `", "enrollment_user_pii_email": "a@b"}`},
		{"form", "application/x-www-form-urlencoded", "event_metadata_event_type=" + other + "&enrollment_mode=audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Body: []byte(tt.body)})
			var ute *UnsupportedTypeError
			if !errors.As(err, &ute) || ute.Type != other {
				t.Fatalf("error %v (%T), want *UnsupportedTypeError for %s", err, err, other)
			}
		})
	}
	// A body that is not readable is a 400 even when it names another type.
	_, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(`{"event_metadata": {"event_type": "` + other + `"},}`)})
	wantError(t, err, "body: invalid JSON")
}

func TestParseWebhookContentTypes(t *testing.T) {
	created := readTestdata(t, "certificate-created.json")
	tests := []struct {
		contentType string
		body        []byte
		ok          bool
	}{
		{"application/json", created, true},
		{"Application/JSON; charset=utf-8", created, true},
		{"application/json;charset=\"UTF-8\"", created, true},
		{"", append([]byte("\xef\xbb\xbf \n"), created...), true},
		{"application/cloudevents+json", readTestdata(t, "certificate-created.cloudevent.json"), true},
		{"application/x-www-form-urlencoded; charset=utf-8", readTestdata(t, "certificate-created.flattened.form"), true},
		{"text/plain", created, false},
		{"application/xml", []byte("<a/>"), false},
		{"application/json; charset=latin-1", created, false},
		{"application/cloudevents-batch+json", []byte("[]"), false},
		{"multipart/form-data; boundary=x", []byte("--x--"), false},
		{"application/json; =", created, false},
		{"", readTestdata(t, "certificate-created.flattened.form"), false},
		{"", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			_, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Body: tt.body})
			if tt.ok && err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrUnsupportedMediaType) {
				t.Fatalf("error %v, want ErrUnsupportedMediaType", err)
			}
		})
	}
}

func TestSignal(t *testing.T) {
	tests := []struct {
		name, file, eventType, status string
		isPassing                     string
		want                          Signal
	}{
		{"created", "certificate-created.json", TypeCertificateCreated, "downloadable", "", SignalSupports},
		{"changed generating", "certificate-created.json", TypeCertificateChanged, "generating", "", SignalSupports},
		{"changed notpassing", "certificate-created.json", TypeCertificateChanged, "notpassing", "", SignalRevokes},
		{"changed unavailable", "certificate-created.json", TypeCertificateChanged, "unavailable", "", SignalRevokes},
		{"changed requesting", "certificate-created.json", TypeCertificateChanged, "requesting", "", SignalNone},
		{"created notpassing", "certificate-created.json", TypeCertificateCreated, "notpassing", "", SignalNone},
		{"revoked", "certificate-revoked.json", TypeCertificateRevoked, "unavailable", "", SignalRevokes},
		{"revoked odd status", "certificate-revoked.json", TypeCertificateRevoked, "downloadable", "", SignalRevokes},
		{"passing true", "passing-status.json", TypePassingStatus, "", "true", SignalSupports},
		{"passing false", "passing-status.json", TypePassingStatus, "", "false", SignalFailing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := string(readTestdata(t, tt.file))
			body = strings.Replace(body, `"event_type": "`+TypeCertificateCreated+`"`, `"event_type": "`+tt.eventType+`"`, 1)
			body = strings.Replace(body, `"event_type": "`+TypeCertificateRevoked+`"`, `"event_type": "`+tt.eventType+`"`, 1)
			if tt.status != "" {
				body = strings.Replace(body, `"current_status": "downloadable"`, `"current_status": "`+tt.status+`"`, 1)
				body = strings.Replace(body, `"current_status": "unavailable"`, `"current_status": "`+tt.status+`"`, 1)
			}
			if tt.isPassing != "" {
				body = strings.Replace(body, `"is_passing": true`, `"is_passing": `+tt.isPassing, 1)
			}
			ev, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(body)})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if ev.Type != tt.eventType {
				t.Fatalf("Type = %s, want %s", ev.Type, tt.eventType)
			}
			if got := ev.Signal(); got != tt.want {
				t.Errorf("Signal() = %v, want %v", got, tt.want)
			}
		})
	}
}
