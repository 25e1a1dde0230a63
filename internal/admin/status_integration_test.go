package admin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/testutil"
	"github.com/badgebridge/bridge/internal/unmapped"
)

// A fresh install (an empty queue Redis: no queue has ever been used) shows empty queues, not
// an error.
func TestIntegrationStatusOnFreshRedis(t *testing.T) {
	rs := testutil.StartRedis(t)
	rdb := rs.Client(t)
	e := echo.New()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	(&API{Ledger: ledger.New(rdb, ledger.Options{}), Token: token, Inspector: ins, Queue: "reconcile"}).Register(e.Group(""))

	rec, m := call(e, "/v1/status", token)
	if rec.Code != 200 {
		t.Fatalf("status: %d %s", rec.Code, rec.Body)
	}
	if _, bad := m["queue_error"]; bad {
		t.Fatalf("fresh install shows a queue error: %s", rec.Body)
	}
	q, ok := m["queue"].(map[string]any)
	if !ok || q["pending"] != float64(0) || q["archived"] != float64(0) {
		t.Fatalf("queue = %v, want zero counts", m["queue"])
	}
	if m["owed_rows"] != float64(0) {
		t.Fatalf("owed_rows = %v", m["owed_rows"])
	}

	// Once the queue is in use its counts show.
	cl := asynq.NewClientFromRedisClient(rdb)
	if _, err := cl.Enqueue(asynq.NewTask("t", nil), asynq.Queue("reconcile")); err != nil {
		t.Fatal(err)
	}
	rec, m = call(e, "/v1/status", token)
	if q, ok := m["queue"].(map[string]any); rec.Code != 200 || !ok || q["pending"] != float64(1) {
		t.Fatalf("after one job: %d %s", rec.Code, rec.Body)
	}
}

// /v1/status lists the most ignored course keys from the list every replica shares: the top
// ten, most first, with counts and when each was last seen.
func TestIntegrationStatusIgnoredCourses(t *testing.T) {
	rs := testutil.StartRedis(t)
	rdb := rs.Client(t)
	e := echo.New()
	store := unmapped.NewStore(rdb, "bb:")
	(&API{Ledger: ledger.New(rdb, ledger.Options{}), Token: token, Unmapped: store}).Register(e.Group(""))

	rec, m := call(e, "/v1/status", token)
	ic, ok := m["ignored_courses"].(map[string]any)
	if rec.Code != 200 || !ok || ic["tracked"] != float64(0) || len(ic["top"].([]any)) != 0 {
		t.Fatalf("empty: %d %s", rec.Code, rec.Body)
	}

	at := time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)
	var counts []unmapped.Count
	for i := range 15 {
		counts = append(counts, unmapped.Count{Course: fmt.Sprintf("course-v1:Org+C%02d+1", i), N: int64(i + 1), LastSeen: at})
	}
	if err := store.Add(context.Background(), counts); err != nil {
		t.Fatal(err)
	}
	rec, m = call(e, "/v1/status", token)
	ic = m["ignored_courses"].(map[string]any)
	top := ic["top"].([]any)
	if rec.Code != 200 || ic["tracked"] != float64(15) || len(top) != 10 {
		t.Fatalf("status: %d %s", rec.Code, rec.Body)
	}
	first := top[0].(map[string]any)
	if first["course"] != "course-v1:Org+C14+1" || first["count"] != float64(15) || first["last_seen"] != "2024-05-27T12:00:00Z" {
		t.Fatalf("first = %v", first)
	}
	if _, ok := first["count_error"]; ok {
		t.Fatalf("an exact count shows an error: %v", first)
	}
}
