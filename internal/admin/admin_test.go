package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
)

const token = "admin-0123456789abcdef0123456789abcdef"

func setup(t *testing.T, tok string) (*echo.Echo, *ledger.Ledger) {
	t.Helper()
	mr := miniredis.RunT(t)
	l := ledger.New(redis.NewClient(&redis.Options{Addr: mr.Addr()}), ledger.Options{})
	e := echo.New()
	(&API{Ledger: l, Token: tok}).Register(e.Group(""))
	return e, l
}

func call(e *echo.Echo, path, tok string) (*httptest.ResponseRecorder, map[string]any) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec, m
}

func TestAdminRefusesWithoutToken(t *testing.T) {
	e, _ := setup(t, token)
	for _, tok := range []string{"", "wrong", token + "x"} {
		if rec, m := call(e, "/v1/awards", tok); rec.Code != http.StatusUnauthorized || m["message"] == "" {
			t.Fatalf("token %q: %d %v", tok, rec.Code, m)
		}
	}
	off, _ := setup(t, "")
	if rec, _ := call(off, "/v1/awards", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("admin API without a configured token answered %d", rec.Code)
	}
}

func TestAwardsFilters(t *testing.T) {
	e, l := setup(t, token)
	ctx := context.Background()
	for uid, email := range map[int64]string{1: "one@example.org", 2: "two@example.org"} {
		_, err := l.Apply(ctx, ledger.Learner{UserID: uid, Email: email, EmailAt: 1}, rules.Change{
			Course: "course-v1:O+C+R", Kind: edx.KindCertificate, Signal: edx.SignalSupports, At: 1,
			Updates: []rules.Update{{BadgeClass: "Class", Rule: "r", Signal: edx.SignalSupports, At: 1, Event: edx.KindCertificate}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := map[string]int{
		"/v1/awards":                            2,
		"/v1/awards?user_id=1":                  1,
		"/v1/awards?email=TWO@example.org":      1,
		"/v1/awards?course=course-v1:O%2BC%2BR": 2,
		"/v1/awards?course=course-v1:X%2BY%2BZ": 0,
		"/v1/awards?state=issued":               0,
		"/v1/awards?badge_class=Class":          2,
	}
	for path, want := range cases {
		rec, m := call(e, path, token)
		if rec.Code != 200 || int(m["count"].(float64)) != want {
			t.Fatalf("%s: %d %v, want %d rows", path, rec.Code, m, want)
		}
	}
	if rec, _ := call(e, "/v1/awards?user_id=abc", token); rec.Code != http.StatusBadRequest {
		t.Fatalf("bad user_id answered %d", rec.Code)
	}
	if rec, m := call(e, "/v1/events/nope", token); rec.Code != http.StatusNotFound || m["message"] == "" {
		t.Fatalf("unknown event: %d %v", rec.Code, m)
	}
}

// A row no reconcile has looked at yet shows the desired state its facts make it (the README lists
// only held and not held), never "unknown"; a revocation shows at once as not held.
func TestAwardsDesiredBeforeAnyReconcile(t *testing.T) {
	e, l := setup(t, token)
	ctx := context.Background()
	change := func(sig edx.Signal, at int64) rules.Change {
		return rules.Change{
			Course: "course-v1:O+C+R", Kind: edx.KindCertificate, Signal: sig, At: at,
			Updates: []rules.Update{{BadgeClass: "Class", Rule: "r", Signal: sig, At: at, Event: edx.KindCertificate, Revoke: true}},
		}
	}
	desired := func() string {
		t.Helper()
		rec, m := call(e, "/v1/awards?user_id=7", token)
		rows, _ := m["awards"].([]any)
		if rec.Code != 200 || len(rows) != 1 {
			t.Fatalf("awards: %d %s", rec.Code, rec.Body)
		}
		return rows[0].(map[string]any)["desired"].(string)
	}
	if _, err := l.Apply(ctx, ledger.Learner{UserID: 7, Email: "seven@example.org", EmailAt: 1}, change(edx.SignalSupports, 1)); err != nil {
		t.Fatal(err)
	}
	if got := desired(); got != "held" {
		t.Fatalf("desired = %q before any reconcile, want held", got)
	}
	if _, err := l.Apply(ctx, ledger.Learner{UserID: 7, Email: "seven@example.org", EmailAt: 2}, change(edx.SignalRevokes, 2)); err != nil {
		t.Fatal(err)
	}
	if got := desired(); got != "not held" {
		t.Fatalf("desired = %q after a revocation, want not held", got)
	}
}
