package admin

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/testutil"
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
