package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

// Failures and awards come in pages with an opaque cursor, and a retry of every parked row
// reports how many it put back.
func TestIntegrationFailuresPageAndRetry(t *testing.T) {
	ctx := context.Background()
	srv := testutil.StartRedis(t)
	l := ledger.New(srv.Client(t), ledger.Options{})
	e := echo.New()
	(&API{Ledger: l, Token: token}).Register(e.Group(""))
	for uid := int64(1); uid <= 25; uid++ {
		k, err := applyAward(ctx, l, uid, "Class1", 1)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := l.Lock(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Step(ctx, k, tok, ledger.Fields{"state": ledger.StateFailed, "reason": "refused"}); err != nil {
			t.Fatal(err)
		}
	}
	seen, pages, cursor := 0, 0, ""
	for {
		path := "/v1/failures?limit=10"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		rec, m := call(e, path, token)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %v", path, rec.Code, m)
		}
		pages++
		seen += int(m["count"].(float64))
		cursor, _ = m["next_cursor"].(string)
		if cursor == "" || pages > 5 {
			break
		}
	}
	if seen != 25 || pages != 3 {
		t.Fatalf("%d failures in %d pages, want 25 in 3", seen, pages)
	}
	if rec, m := call(e, "/v1/awards?cursor=not-a-cursor!", token); rec.Code != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d %v", rec.Code, m)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/failures/retry", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	if rec.Code != http.StatusOK || m["count"] != float64(25) {
		t.Fatalf("retry: %d %v", rec.Code, m)
	}
	if _, m := call(e, "/v1/failures", token); m["count"] != float64(0) {
		t.Fatalf("failures left after the retry: %v", m)
	}
}

// applyAward records a supporting certificate fact for one row, as intake would.
func applyAward(ctx context.Context, l *ledger.Ledger, uid int64, class string, at int64) (ledger.RowKey, error) {
	applied, err := l.Apply(ctx, ledger.Learner{UserID: uid, Email: "learner@example.org", EmailAt: at}, rules.Change{
		Course: "course-v1:O+C+R", Kind: edx.KindCertificate, Signal: edx.SignalSupports, At: at,
		Updates: []rules.Update{{BadgeClass: class, Rule: "r", Signal: edx.SignalSupports, At: at, Event: edx.KindCertificate, Revoke: true}},
	})
	rows := applied.Rows
	if err == nil && len(rows) != 1 {
		err = fmt.Errorf("award of %s to %d changed rows %v", class, uid, rows)
	}
	if err != nil {
		return ledger.RowKey{}, err
	}
	return rows[0], nil
}
