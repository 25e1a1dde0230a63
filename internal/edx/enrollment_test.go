package edx

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// enrollmentCreatedHex is testdata/enrollment-created.json as event_data, derived with the
// published schema and checked by hand: the certificate's user and course bytes, then mode
// 0a "audit", is_active 01, creation_date 40 + 32 bytes, created_by 00 (null branch).
const enrollmentCreatedHex = "54010a616c69636522616c696365406578616d706c652e636f6d1a416c696365204c696464656c6c46636f757273652d76313a4f70656e6564582b44656d6f582b44656d6f5f436f757273650000000a61756469740140323032342d30352d32305430383a30303a30302e3132303030302b30303a303000"

// enrollmentEvent is the learner and course of every enrollment example.
func enrollmentEvent(t testing.TB, typ, id, at, mode string, active bool) Event {
	return Event{
		ID: id, Type: typ, Kind: KindEnrollment, Time: mustTime(t, at), Source: "openedx/lms/web",
		UserID: 42, Username: "alice", Email: "alice@example.com", Name: "Alice Liddell",
		Course: demoKey(t), Mode: mode, IsActive: active,
	}
}

func TestParseWebhookEnrollment(t *testing.T) {
	created := enrollmentEvent(t, TypeEnrollmentCreated, "0b4f4a2e-1684-11ef-9a57-0242ac120005",
		"2024-05-20T08:00:00.123456Z", "audit", true)
	inactive := enrollmentEvent(t, TypeEnrollmentChanged, "5d7c3e10-1ebd-11ef-9a57-0242ac120005",
		"2024-05-30T16:40:02.654321Z", "verified", false)
	upgraded := enrollmentEvent(t, TypeEnrollmentChanged, "2f1e8a40-1850-11ef-9a57-0242ac120005",
		"2024-05-22T15:02:11.25Z", "verified", true)
	// openedx-events-sender's default body carries no metadata: no id, the receive time.
	fromSender := enrollmentEvent(t, TypeEnrollmentChanged, "", "2024-05-27T13:00:00.123456Z", "verified", true)
	fromSender.Source, fromSender.TimeMissing = "", true

	binary := http.Header{}
	binary.Set("ce-specversion", "1.0")
	binary.Set("ce-type", TypeEnrollmentCreated)
	binary.Set("ce-id", "0b4f4a2e-1684-11ef-9a57-0242ac120005")
	binary.Set("ce-source", "openedx/lms/web")
	binary.Set("ce-time", "2024-05-20 08:00:00.123456+00:00")
	binaryBody := func(t *testing.T) []byte {
		obj, err := parseJSONObject(readTestdata(t, "enrollment-created.json"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(map[string]any{enrollmentKey: obj[enrollmentKey]})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	tests := []struct {
		name, contentType string
		header            http.Header
		body              func(t *testing.T) []byte
		want              Event
		signal            Signal
	}{
		{"openedx-events JSON", "application/json", nil, file("enrollment-created.json"), created, SignalSupports},
		{"eox-hooks form, inactive", "application/x-www-form-urlencoded", nil, file("enrollment-changed-inactive.flattened.form"), inactive, SignalRevokes},
		{"CloudEvents structured", "application/cloudevents+json", nil, file("enrollment-changed.cloudevent.json"), upgraded, SignalSupports},
		{"CloudEvents binary", "application/json", binary, binaryBody, created, SignalSupports},
		{"openedx-events-sender default", "application/json", nil, file("enrollment-changed.sender.json"), fromSender, SignalSupports},
		{"flattened JSON, full keys", "application/json", nil, func(*testing.T) []byte {
			return []byte(`{"event_metadata_event_type": "` + TypeEnrollmentChanged + `",
				"event_metadata_id": "5d7c3e10-1ebd-11ef-9a57-0242ac120005", "event_metadata_source": "openedx/lms/web",
				"event_metadata_time": "2024-05-30T16:40:02.654321Z",
				"enrollment_user_id": "42", "enrollment_user_pii_username": "alice", "enrollment_user_pii_email": "alice@example.com",
				"enrollment_user_pii_name": "Alice Liddell", "enrollment_course_course_key": "course-v1:OpenedX+DemoX+Demo_Course",
				"enrollment_mode": " verified ", "enrollment_is_active": 0}`)
		}, inactive, SignalRevokes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Header: tt.header, Body: tt.body(t), Received: received})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if !reflect.DeepEqual(ev, tt.want) {
				t.Errorf("got  %+v\nwant %+v", ev, tt.want)
			}
			if got := ev.Signal(); got != tt.signal {
				t.Errorf("Signal() = %v, want %v", got, tt.signal)
			}
		})
	}
}

func file(name string) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return readTestdata(t, name) }
}

func TestParseWebhookEnrollmentLeniency(t *testing.T) {
	created := string(readTestdata(t, "enrollment-created.json"))
	for _, tt := range []struct {
		name, old, new string
		check          func(t *testing.T, ev Event)
	}{
		{"is_active as Python string", `"is_active": true,
    "creation_date"`, `"is_active": "False",
    "creation_date"`, func(t *testing.T, ev Event) {
			if ev.IsActive || ev.Signal() != SignalRevokes {
				t.Errorf("IsActive %v Signal %v", ev.IsActive, ev.Signal())
			}
		}},
		{"mode missing", `"mode": "audit",`, ``, func(t *testing.T, ev Event) {
			if ev.Mode != "" || !ev.IsActive {
				t.Errorf("Mode %q IsActive %v", ev.Mode, ev.IsActive)
			}
		}},
		// The account flag is not the enrollment's: an inactive account's enrollment is active.
		{"account inactive", `"is_active": true,
      "pii"`, `"is_active": false,
      "pii"`, func(t *testing.T, ev Event) {
			if !ev.IsActive {
				t.Error("IsActive took the account flag")
			}
		}},
		{"created_by set", `"created_by": null`, `"created_by": {"id": 1, "is_active": true, "pii": {"username": "staff", "email": "staff@example.com", "name": ""}}`,
			func(t *testing.T, ev Event) {
				if ev.UserID != 42 || ev.Email != "alice@example.com" {
					t.Errorf("the learner is the enrolled user, got %d %s", ev.UserID, ev.Email)
				}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(created, tt.old) {
				t.Fatalf("%q not in body", tt.old)
			}
			body := strings.Replace(created, tt.old, tt.new, 1)
			ev, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(body), Received: received})
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			tt.check(t, ev)
		})
	}
}

func TestParseWebhookEnrollmentMalformed(t *testing.T) {
	created := string(readTestdata(t, "enrollment-created.json"))
	form := string(readTestdata(t, "enrollment-changed-inactive.flattened.form"))
	cloud := string(readTestdata(t, "enrollment-changed.cloudevent.json"))
	sender := string(readTestdata(t, "enrollment-changed.sender.json"))
	edit := func(body, old, new string) string {
		t.Helper()
		if !strings.Contains(body, old) {
			t.Fatalf("%q not in body", old)
		}
		return strings.Replace(body, old, new, 1)
	}
	const activeJSON = "\"is_active\": true,\n    \"creation_date\""
	tests := []struct {
		name, contentType, body, want string
	}{
		{"missing email", "application/json", edit(created, `"email": "alice@example.com",`, ``),
			"enrollment.user.pii.email: missing"},
		{"implausible email", "application/json", edit(created, `"email": "alice@example.com"`, `"email": "alice"`),
			"enrollment.user.pii.email: not a plausible e-mail address"},
		{"missing user id", "application/json", edit(created, `"id": 42,`, ``),
			"enrollment.user.id: missing"},
		{"missing course key", "application/json", edit(created, `"course_key": "course-v1:OpenedX+DemoX+Demo_Course",`, ``),
			"enrollment.course.course_key: missing"},
		{"missing is_active", "application/json", edit(created, activeJSON, `"creation_date"`),
			"enrollment.is_active: missing"},
		{"bad is_active", "application/json", edit(created, activeJSON, `"is_active": "enrolled", "creation_date"`),
			`enrollment.is_active: "enrolled" is not a boolean (want true/false, True/False or 1/0)`},
		{"mode too long", "application/json", edit(created, `"mode": "audit"`, `"mode": "`+strings.Repeat("m", 256)+`"`),
			"enrollment.mode: longer than 255 characters"},
		{"missing payload", "application/json", `{"event_metadata": {"event_type": "` + TypeEnrollmentCreated + `"}}`,
			"enrollment: missing"},
		{"payload of another kind", "application/json", edit(created, `"enrollment": {`, `"certificate": {`),
			"enrollment: missing"},
		{"form missing email", "application/x-www-form-urlencoded", edit(form, "&enrollment_user_pii_email=alice%40example.com", ""),
			"enrollment.user.pii.email (enrollment_user_pii_email): missing"},
		{"form missing is_active", "application/x-www-form-urlencoded", edit(form, "&enrollment_is_active=False", ""),
			"enrollment.is_active (enrollment_is_active): missing"},
		{"form bad is_active", "application/x-www-form-urlencoded", edit(form, "enrollment_is_active=False", "enrollment_is_active=None"),
			`enrollment.is_active (enrollment_is_active): "None" is not a boolean`},
		{"form repeated course key", "application/x-www-form-urlencoded", form + "&enrollment_course_course_key=a%2Fb%2Fc",
			"enrollment.course.course_key (enrollment_course_course_key): given 2 times"},
		{"cloudevent missing course key", "application/cloudevents+json", edit(cloud, `"course_key": "course-v1:OpenedX+DemoX+Demo_Course",`, ``),
			"enrollment.course.course_key (data.enrollment.course.course_key): missing"},
		{"sender missing email", "application/json", edit(sender, `"user_pii_email": "alice@example.com",`, ``),
			"enrollment.user.pii.email (user_pii_email): missing"},
		{"sender missing is_active", "application/json", edit(sender, `"is_active": true,
  "creation_date"`, `"creation_date"`),
			"enrollment.is_active (is_active): missing"},
		{"sender type not a string", "application/json", edit(sender, `"event": "org.openedx.learning.course.enrollment.changed.v1"`, `"event": 5`),
			"event_metadata.event_type (event): expected a string, got a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Body: []byte(tt.body), Received: received})
			wantError(t, err, tt.want)
		})
	}
}

// In openedx-events-sender's default body an unknown type is ignored like any other, and full
// keys are not read as unprefixed ones or the other way round.
func TestParseWebhookEnrollmentSenderShape(t *testing.T) {
	sender := string(readTestdata(t, "enrollment-changed.sender.json"))
	other := strings.Replace(sender, TypeEnrollmentChanged, "org.openedx.learning.course.unenrollment.completed.v1", 1)
	_, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(other)})
	var ute *UnsupportedTypeError
	if !errors.As(err, &ute) {
		t.Fatalf("error %v, want *UnsupportedTypeError", err)
	}

	// event_metadata_event_type wins over "event", and then only full keys count: the
	// unprefixed payload is not read at all.
	mixed := strings.Replace(sender, `"event":`, `"event_metadata_event_type": "`+TypeEnrollmentChanged+`", "event":`, 1)
	_, err = ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(mixed)})
	wantError(t, err, "enrollment: missing")
	mixed = strings.Replace(mixed, `"user_id": 42`, `"enrollment_user_id": 42`, 1)
	_, err = ParseWebhook(WebhookRequest{ContentType: "application/json", Body: []byte(mixed)})
	wantError(t, err, "enrollment.user.pii.email (enrollment_user_pii_email): missing")
}

// The bus entry of the created example, as openedx/event-bus-redis writes it, is the same
// Event as the webhook body, and the body encodes to exactly those bytes.
func TestDecodeBusEntryEnrollmentFixture(t *testing.T) {
	body := readTestdata(t, "enrollment-created.json")
	obj, err := parseJSONObject(body)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := EncodeAvro(TypeEnrollmentCreated, obj); err != nil || hex.EncodeToString(data) != enrollmentCreatedHex {
		t.Errorf("EncodeAvro = %x, %v\nwant %s", data, err, enrollmentCreatedHex)
	}
	ev, err := DecodeBusEntry(map[string]string{
		"type": TypeEnrollmentCreated, "id": "0b4f4a2e-1684-11ef-9a57-0242ac120005", "source": "openedx/lms/web",
		"time": "2024-05-20T08:00:00.123456+00:00", "minorversion": "0", "sourcehost": "lms-1", "sourcelib": "11.2.0",
		"event_data": string(mustHex(t, enrollmentCreatedHex)),
	}, received)
	if err != nil {
		t.Fatalf("DecodeBusEntry: %v", err)
	}
	want := enrollmentEvent(t, TypeEnrollmentCreated, "0b4f4a2e-1684-11ef-9a57-0242ac120005",
		"2024-05-20T08:00:00.123456Z", "audit", true)
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("got  %+v\nwant %+v", ev, want)
	}

	// A bad value inside event_data is named by its path and dead-letters the entry.
	data := mustHex(t, enrollmentCreatedHex)
	data[len(data)-35] = 0x02 // is_active (before the 0x40 length, 32 date bytes and created_by): not a boolean
	_, err = DecodeBusEntry(map[string]string{"type": TypeEnrollmentChanged, "event_data": string(data)}, received)
	if !errors.Is(err, ErrUndecodable) || !strings.Contains(err.Error(), "enrollment.is_active: avro: ReadBool: invalid bool") {
		t.Errorf("error %v, want ErrUndecodable naming enrollment.is_active", err)
	}
	// An empty e-mail decodes as Avro but is refused by the normalizer, naming the path.
	payload := obj[enrollmentKey].(map[string]any)
	payload["user"].(map[string]any)["pii"].(map[string]any)["email"] = ""
	data, err = EncodeAvro(TypeEnrollmentChanged, obj)
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodeBusEntry(map[string]string{"type": TypeEnrollmentChanged, "event_data": string(data)}, received)
	var fe *FieldError
	if !errors.Is(err, ErrUndecodable) || !errors.As(err, &fe) || fe.Path != "enrollment.user.pii.email" {
		t.Errorf("error %v, want ErrUndecodable with a FieldError at enrollment.user.pii.email", err)
	}
}

func TestDecodeBusEntryEnrollment(t *testing.T) {
	for _, tt := range []struct {
		file, contentType string
	}{
		{"enrollment-created.json", "application/json"},
		{"enrollment-changed.cloudevent.json", "application/cloudevents+json"},
		{"enrollment-changed-inactive.flattened.form", "application/x-www-form-urlencoded"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			fromHook, err := ParseWebhook(WebhookRequest{ContentType: tt.contentType, Body: readTestdata(t, tt.file)})
			if err != nil {
				t.Fatal(err)
			}
			user := alice()
			user["is_active"] = true
			payload := map[string]any{"enrollment": map[string]any{
				"user": user, "course": demoCourseData(), "mode": fromHook.Mode, "is_active": fromHook.IsActive,
				"creation_date": "2024-05-20T08:00:00.120000+00:00", "created_by": nil,
			}}
			data, err := EncodeAvro(fromHook.Type, payload)
			if err != nil {
				t.Fatalf("EncodeAvro: %v", err)
			}
			fromBus, err := DecodeBusEntry(map[string]string{
				"type": fromHook.Type, "id": fromHook.ID, "source": fromHook.Source,
				"time": fromHook.Time.Format(time.RFC3339Nano), "minorversion": "0", "sourcehost": "lms-1",
				"sourcelib": "11.2.0", "event_data": string(data),
			}, received)
			if err != nil {
				t.Fatalf("DecodeBusEntry: %v", err)
			}
			if !reflect.DeepEqual(fromBus, fromHook) {
				t.Errorf("bus  %+v\nhook %+v", fromBus, fromHook)
			}
		})
	}
}

// The changed schema is the created one under its own namespace: the same payload is the same
// bytes under both types, and each decodes what the other encodes.
func TestEnrollmentSchemas(t *testing.T) {
	payload := map[string]any{"enrollment": map[string]any{
		"user": alice(), "course": demoCourseData(), "mode": "verified", "is_active": false,
		"creation_date": "2024-05-20T08:00:00.120000+00:00", "created_by": alice(),
	}}
	created, err := EncodeAvro(TypeEnrollmentCreated, payload)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := EncodeAvro(TypeEnrollmentChanged, payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(created, changed) {
		t.Errorf("created %x\nchanged %x", created, changed)
	}
	got, err := DecodeAvro(TypeEnrollmentChanged, created)
	if err != nil || !reflect.DeepEqual(got, payload) {
		t.Errorf("DecodeAvro = %#v, %v\nwant %#v", got, err, payload)
	}
	// Field order is user, course, mode, is_active, creation_date, created_by: the record ends
	// with is_active false (00), the date, and the union branch of created_by (02 = UserData).
	const date = "2024-05-20T08:00:00.120000+00:00"
	tail := append(append([]byte{0x00, byte(len(date) << 1)}, date...), 0x02)
	if !bytes.Contains(changed, tail) {
		t.Errorf("encoding %x lacks %x", changed, tail)
	}

	s, err := schemaFor(TypeEnrollmentChanged)
	if err != nil {
		t.Fatal(err)
	}
	if s.FullName() != TypeEnrollmentChanged+".CloudEvent" {
		t.Errorf("changed schema is named %s", s.FullName())
	}
}

func TestEnrollmentDigest(t *testing.T) {
	active := enrollmentEvent(t, TypeEnrollmentChanged, "e1", "2024-05-22T15:02:11.25Z", "verified", true)
	inactive := active
	inactive.IsActive = false
	if active.Digest() == inactive.Digest() {
		t.Error("an enrollment and its deactivation under one id must have different digests")
	}
}

func TestKindOfEnrollment(t *testing.T) {
	for _, typ := range []string{TypeEnrollmentCreated, TypeEnrollmentChanged} {
		if k, ok := KindOf(typ); !ok || k != KindEnrollment {
			t.Errorf("KindOf(%s) = %q, %v", typ, k, ok)
		}
		if key, ok := payloadKeyOf(typ); !ok || key != payloadKey(KindEnrollment) {
			t.Errorf("%s: payload key %q, want %q", typ, key, payloadKey(KindEnrollment))
		}
	}
	if _, ok := KindOf("org.openedx.learning.course.unenrollment.completed.v1"); ok {
		t.Error("unenrollment.completed is not a supported type")
	}
}
