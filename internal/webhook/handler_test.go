package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/durable"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
)

type fakeIntake struct {
	got []edx.Event
	err error
	res *intake.Result // the answer, when not the default "accepted"
}

func (f *fakeIntake) Handle(_ context.Context, ev edx.Event, _ string) (intake.Result, error) {
	if f.err != nil {
		return intake.Result{}, f.err
	}
	if f.res != nil {
		return *f.res, nil
	}
	f.got = append(f.got, ev)
	return intake.Result{Status: intake.StatusAccepted, Message: "accepted", Jobs: []string{"C:42"}}, nil
}

const token = "t-0123456789abcdef0123456789abcdef"

func serve(t *testing.T, in Intake, req *http.Request) (*httptest.ResponseRecorder, Answer) {
	t.Helper()
	auth, _ := NewAuth(nil, []string{token}, nil)
	h := &Handler{Auth: auth, Intake: in, Log: discard()}
	e := echo.New()
	e.POST("/v1/webhooks/openedx", h.ServeWebhook)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var a Answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("answer is not JSON: %q", rec.Body.String())
	}
	if a.Message == "" {
		t.Fatalf("answer %d has no message: %s", rec.Code, rec.Body.String())
	}
	return rec, a
}

func post(body, contentType string, auth bool) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/webhooks/openedx", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if auth {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestEveryExampleAccepted(t *testing.T) {
	files := map[string]string{
		"certificate-created.json":            "application/json",
		"certificate-revoked.json":            "application/json",
		"passing-status.json":                 "application/json",
		"certificate-created.cloudevent.json": "application/cloudevents+json",
		"certificate-created.flattened.json":  "application/json",
		"certificate-created.flattened.form":  "application/x-www-form-urlencoded",
	}
	for name, ct := range files {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile("../edx/testdata/" + name)
			if err != nil {
				t.Fatal(err)
			}
			in := &fakeIntake{}
			rec, a := serve(t, in, post(string(b), ct, true))
			if rec.Code != http.StatusOK || a.Status != intake.StatusAccepted {
				t.Fatalf("%d %+v", rec.Code, a)
			}
			if len(in.got) != 1 || in.got[0].UserID != 42 || in.got[0].Course.Raw != "course-v1:OpenedX+DemoX+Demo_Course" {
				t.Fatalf("intake got %+v", in.got)
			}
		})
	}
}

func TestAnswers(t *testing.T) {
	good, _ := os.ReadFile("../edx/testdata/certificate-created.json")
	cases := []struct {
		name   string
		req    *http.Request
		intake *fakeIntake
		code   int
		want   string // in the message
	}{
		{"no credential", post(string(good), "application/json", false), &fakeIntake{}, 401, "credential"},
		{"missing email", post(strings.Replace(string(good), `"email": "alice@example.com",`, "", 1), "application/json", true), &fakeIntake{}, 400, "certificate.user.pii.email"},
		{"bad json", post(`{"event_metadata": `, "application/json", true), &fakeIntake{}, 400, "malformed"},
		{"unsupported content type", post("<xml/>", "application/xml", true), &fakeIntake{}, 415, ""},
		{"oversize body", post(`{"x":"`+strings.Repeat("a", MaxBody)+`"}`, "application/json", true), &fakeIntake{}, 413, "1 MiB"},
		{"unsupported event type", post(strings.Replace(string(good), "certificate.created.v1", "course.unenrollment.completed.v1", 1), "application/json", true), &fakeIntake{}, 200, "ignored"},
		{"deep JSON", post(strings.Repeat(`{"a":`, 5000)+"1"+strings.Repeat("}", 5000), "application/json", true), &fakeIntake{}, 400, "malformed"},
		{"invalid UTF-8", post(strings.Replace(string(good), "Alice Liddell", "Alice \xff\xfe", 1), "application/json", true), &fakeIntake{}, 400, "UTF-8"},
		{"name too long", post(strings.Replace(string(good), "Alice Liddell", strings.Repeat("A", 256), 1), "application/json", true), &fakeIntake{}, 400, "certificate.user.pii.name: longer than 255"},
		{"bidi control in the name", post(strings.Replace(string(good), "Alice Liddell", "Alice \u202e", 1), "application/json", true), &fakeIntake{}, 400, "certificate.user.pii.name: contains U+202E"},
		{"queue down", post(string(good), "application/json", true), &fakeIntake{err: errors.New("redis down")}, 503, "retry"},
		{"write not confirmed by replicas", post(string(good), "application/json", true),
			&fakeIntake{err: fmt.Errorf("event %q: %w", "e", fmt.Errorf("%w: 0 of 1 replicas acknowledged the write within 1s", durable.ErrNotConfirmed))},
			503, "not confirmed by enough Redis replicas"},
		{"id reused for another body", post(string(good), "application/json", true), &fakeIntake{res: &intake.Result{Status: intake.StatusConflict, Message: "conflict: already handled"}}, 409, "conflict"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, a := serve(t, c.intake, c.req)
			if rec.Code != c.code || !strings.Contains(a.Message, c.want) {
				t.Fatalf("got %d %q, want %d containing %q", rec.Code, a.Message, c.code, c.want)
			}
			if c.code == 503 && rec.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			if c.code != 200 && len(c.intake.got) != 0 {
				t.Fatal("a refused request reached intake")
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
