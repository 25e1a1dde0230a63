package edx

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Seed corpora are in testdata/fuzz/<FuzzName>/; these add the reference examples.

func FuzzParseWebhook(f *testing.F) {
	for _, ex := range []struct{ file, contentType string }{
		{"certificate-created.json", "application/json"},
		{"certificate-revoked.json", "application/json"},
		{"passing-status.json", "application/json; charset=utf-8"},
		{"certificate-created.cloudevent.json", "application/cloudevents+json"},
		{"certificate-created.flattened.json", "application/json"},
		{"certificate-created.flattened.form", "application/x-www-form-urlencoded"},
		{"enrollment-created.json", "application/json"},
		{"enrollment-changed.cloudevent.json", "application/cloudevents+json"},
		{"enrollment-changed-inactive.flattened.form", "application/x-www-form-urlencoded"},
		{"enrollment-changed.sender.json", "application/json"},
	} {
		f.Add(ex.contentType, readTestdata(f, ex.file), "")
	}
	f.Add("application/json", []byte(`{"certificate": {"user": {"id": 1, "pii": {"email": "a@b"}}, "course": {"course_key": "a/b/c"}, "current_status": "x"}}`), TypeCertificateChanged)
	f.Fuzz(func(t *testing.T, contentType string, body []byte, ceType string) {
		h := http.Header{}
		if ceType != "" {
			h["Ce-Type"] = []string{ceType}
		}
		req := WebhookRequest{ContentType: contentType, Header: h, Body: body, Received: received}
		ev, err := ParseWebhook(req)
		if err != nil {
			var fe *FieldError
			var ute *UnsupportedTypeError
			if !errors.As(err, &fe) && !errors.As(err, &ute) && !errors.Is(err, ErrUnsupportedMediaType) {
				t.Fatalf("error %v (%T) maps to no answer", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		checkEvent(t, ev)
		again, err := ParseWebhook(req)
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("second parse gave %+v, %v", again, err)
		}
	})
}

// checkEvent asserts what every successfully parsed Event guarantees.
func checkEvent(t *testing.T, ev Event) {
	t.Helper()
	if kind, ok := KindOf(ev.Type); !ok || kind != ev.Kind {
		t.Fatalf("Type %q Kind %q", ev.Type, ev.Kind)
	}
	if ev.UserID <= 0 || !PlausibleEmail(ev.Email) {
		t.Fatalf("UserID %d, e-mail plausible %v", ev.UserID, PlausibleEmail(ev.Email))
	}
	if ev.Kind == KindCertificate && strings.TrimSpace(ev.Status) == "" {
		t.Fatal("certificate event without a status")
	}
	if ev.Time.Location() != time.UTC || ev.Time.Nanosecond()%1000 != 0 || ev.Time.IsZero() {
		t.Fatalf("Time %v is not UTC with microsecond precision", ev.Time)
	}
	k, err := ParseCourseKey(ev.Course.Raw)
	if err != nil || k.Style != ev.Course.Style {
		t.Fatalf("course key %q does not parse again: %v", ev.Course.Raw, err)
	}
	if (ev.Course.Style == StyleCCXV1) != (ev.Course.Master != nil) {
		t.Fatalf("Course %+v: Master set for non-CCX or missing for CCX", ev.Course)
	}
	for _, s := range []string{ev.ID, ev.Source, ev.Username, ev.Name, ev.Mode, ev.Grade, ev.Status, ev.CertificateURL} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 in %+v", ev)
		}
	}
}

func FuzzParseCourseKey(f *testing.F) {
	for _, s := range []string{
		demoCourse, "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3", "edX/DemoX/Demo_Course",
		"course-v1:a+b+c+branch@d", "library-v1:a+b", "alice@example.com", "", " course-v1:ü+ß+1 ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseCourseKey(s)
		if err != nil {
			raw := strings.TrimSpace(s)
			if mayBeEmail(raw) && strings.Contains(err.Error(), raw) {
				t.Fatalf("error %q repeats what may be an e-mail address", err)
			}
			return
		}
		if k.Raw != strings.TrimSpace(s) || k.String() != k.Raw {
			t.Fatalf("Raw %q for input %q", k.Raw, s)
		}
		if k.Org == "" || k.Course == "" || k.Run == "" || len(k.Raw) > maxCourseKeyLen {
			t.Fatalf("parts missing or key too long: %+v", k)
		}
		var canonical string
		switch k.Style {
		case StyleCourseV1:
			canonical = "course-v1:" + k.Org + "+" + k.Course + "+" + k.Run
		case StyleSlash:
			canonical = k.Org + "/" + k.Course + "/" + k.Run
		case StyleCCXV1:
			canonical = "ccx-v1:" + k.Org + "+" + k.Course + "+" + k.Run + "+ccx@" + k.CCX
			if k.Master == nil || k.Master.Raw != "course-v1:"+k.Org+"+"+k.Course+"+"+k.Run {
				t.Fatalf("Master %+v", k.Master)
			}
			if m, err := ParseCourseKey(k.Master.Raw); err != nil || !reflect.DeepEqual(m, *k.Master) {
				t.Fatalf("Master %q does not parse again: %v", k.Master.Raw, err)
			}
		default:
			t.Fatalf("Style %q", k.Style)
		}
		if canonical != k.Raw {
			t.Fatalf("parts %+v rebuild %q, not %q", k, canonical, k.Raw)
		}
		if again, err := ParseCourseKey(k.Raw); err != nil || !reflect.DeepEqual(again, k) {
			t.Fatalf("reparse gave %+v, %v", again, err)
		}
	})
}

func FuzzDecodeAvro(f *testing.F) {
	all, err := eventSchemas()
	if err != nil {
		f.Fatal(err)
	}
	var types []string
	for typ := range all {
		types = append(types, typ)
	}
	slices.Sort(types)
	index := func(typ string) uint8 { return uint8(slices.Index(types, typ)) }
	f.Add(index(TypeCertificateCreated), mustHex(f, certCreatedHex))
	f.Add(index(TypePassingStatus), mustHex(f, passingHex))
	f.Add(index(TypeCCXPassingStatus), mustHex(f, passingHex))
	f.Add(index(TypeEnrollmentCreated), mustHex(f, enrollmentCreatedHex))
	f.Add(index(TypeEnrollmentChanged), mustHex(f, enrollmentCreatedHex))
	f.Fuzz(func(t *testing.T, typeIndex uint8, data []byte) {
		typ := types[int(typeIndex)%len(types)]
		rec, err := DecodeAvro(typ, data)
		if _, supported := KindOf(typ); supported {
			_, busErr := DecodeBusEntry(map[string]string{"type": typ, "event_data": string(data)}, received)
			if busErr != nil && !errors.Is(busErr, ErrUndecodable) {
				t.Fatalf("bus entry error %v does not wrap ErrUndecodable", busErr)
			}
			if err != nil && busErr == nil {
				t.Fatalf("DecodeAvro failed (%v) but the bus entry decoded", err)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("error %v does not wrap ErrUndecodable", err)
			}
			return
		}
		// Whatever decodes re-encodes, canonically (never longer), and stably.
		b1, err := EncodeAvro(typ, rec)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", rec, err)
		}
		if len(b1) > len(data) {
			t.Fatalf("canonical form %x longer than input %x", b1, data)
		}
		rec2, err := DecodeAvro(typ, b1)
		if err != nil {
			t.Fatalf("decoding the re-encoded %x: %v", b1, err)
		}
		if b2, err := EncodeAvro(typ, rec2); err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("unstable encoding: %x then %x (%v)", b1, b2, err)
		}
	})
}
