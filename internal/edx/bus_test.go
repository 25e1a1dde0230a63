package edx

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// busEntry is the entry of openedx-events.md section 6.2 (XRANGE example).
func busEntry(t testing.TB) map[string]string {
	return map[string]string{
		"type":         TypeCertificateCreated,
		"id":           "3e068212-1c24-11ef-9a57-0242ac120005",
		"source":       "openedx/lms/web",
		"time":         "2024-05-27T12:25:45.678901+00:00",
		"minorversion": "0",
		"sourcehost":   "lms-1",
		"sourcelib":    "11.2.0",
		"event_data":   string(mustHex(t, certCreatedHex)),
	}
}

func TestDecodeBusEntry(t *testing.T) {
	ev, err := DecodeBusEntry(busEntry(t), received)
	if err != nil {
		t.Fatalf("DecodeBusEntry: %v", err)
	}
	if want := createdEvent(t, "2024-05-27T12:25:45.678901Z"); !reflect.DeepEqual(ev, want) {
		t.Errorf("got  %+v\nwant %+v", ev, want)
	}

	// The passing-status entry, with only the fields the reference parser requires.
	ev, err = DecodeBusEntry(map[string]string{"type": TypePassingStatus, "event_data": string(mustHex(t, passingHex))}, received)
	if err != nil {
		t.Fatalf("DecodeBusEntry: %v", err)
	}
	want := Event{
		Type: TypePassingStatus, Kind: KindPassing, Time: received.Truncate(time.Microsecond), TimeMissing: true,
		UserID: 42, Username: "alice", Email: "alice@example.com", Name: "Alice Liddell", Course: demoKey(t), IsPassing: true,
	}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("got  %+v\nwant %+v", ev, want)
	}
}

// A webhook body and the bus entry built from it give the same Event: one normalizer.
func TestDecodeBusEntryMatchesWebhook(t *testing.T) {
	for _, file := range []string{"certificate-created.json", "certificate-revoked.json", "passing-status.json"} {
		t.Run(file, func(t *testing.T) {
			body := readTestdata(t, file)
			fromHook, err := ParseWebhook(WebhookRequest{ContentType: "application/json", Body: body})
			if err != nil {
				t.Fatal(err)
			}
			obj, err := parseJSONObject(body)
			if err != nil {
				t.Fatal(err)
			}
			data, err := EncodeAvro(fromHook.Type, obj)
			if err != nil {
				t.Fatal(err)
			}
			meta := obj["event_metadata"].(map[string]any)
			fromBus, err := DecodeBusEntry(map[string]string{
				"type": fromHook.Type, "id": meta["id"].(string), "source": meta["source"].(string),
				"time": meta["time"].(string), "event_data": string(data),
			}, received)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromBus, fromHook) {
				t.Errorf("bus  %+v\nhook %+v", fromBus, fromHook)
			}
		})
	}
}

func TestDecodeBusEntryErrors(t *testing.T) {
	entry := func(edit func(map[string]string)) map[string]string {
		e := busEntry(t)
		edit(e)
		return e
	}
	withEmail := func(email string) string {
		cert := map[string]any{"certificate": map[string]any{
			"user":   map[string]any{"id": 42, "is_active": true, "pii": map[string]any{"username": "a", "email": email, "name": ""}},
			"course": demoCourseData(), "mode": "honor", "grade": "", "download_url": "", "name": "",
			"current_status": "downloadable", "previous_status": "",
		}}
		b, err := EncodeAvro(TypeCertificateCreated, cert)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name      string
		fields    map[string]string
		want      string
		wantField bool
	}{
		{"no type", entry(func(e map[string]string) { delete(e, "type") }), "entry has no type field", false},
		{"no data", entry(func(e map[string]string) { delete(e, "event_data") }), "entry has no event_data field", false},
		{"garbage", entry(func(e map[string]string) { e["event_data"] = "\x01\x02\x03" }), "entry: undecodable event: event_data: certificate.user.is_active: avro: ReadBool: invalid bool", false},
		{"left over", entry(func(e map[string]string) { e["event_data"] += "x" }), "1 bytes left over", false},
		{"bad time", entry(func(e map[string]string) { e["time"] = "soon" }), `entry: undecodable event: event_metadata.time (field time): "soon" is not a time`, true},
		{"empty email", entry(func(e map[string]string) { e["event_data"] = withEmail("") }), "certificate.user.pii.email: missing", true},
		{"implausible email", entry(func(e map[string]string) { e["event_data"] = withEmail("alice") }), "certificate.user.pii.email: not a plausible e-mail address", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeBusEntry(tt.fields, received)
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("error %v, want ErrUndecodable", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			var fe *FieldError
			if errors.As(err, &fe) != tt.wantField {
				t.Errorf("error %v: FieldError %v, want %v", err, !tt.wantField, tt.wantField)
			}
		})
	}
}

func TestDecodeBusEntryUnsupportedType(t *testing.T) {
	// badge.awarded shares the stream; it is skipped without decoding (its data is garbage here).
	_, err := DecodeBusEntry(map[string]string{"type": "org.openedx.learning.badge.awarded.v1", "event_data": "\xff"}, received)
	var ute *UnsupportedTypeError
	if !errors.As(err, &ute) || ute.Type != "org.openedx.learning.badge.awarded.v1" || errors.Is(err, ErrUndecodable) {
		t.Fatalf("error %v, want *UnsupportedTypeError only", err)
	}
}
