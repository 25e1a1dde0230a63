package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/eventbus"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/testutil"
)

// An erase collects the learner's queued jobs, event records and dead letters first and removes
// all of them; a replay of the learner's old event is refused afterwards.
func TestIntegrationEraseLearner(t *testing.T) {
	ctx := context.Background()
	srv := testutil.StartRedis(t)
	rdb := srv.Client(t)
	l := ledger.New(rdb, ledger.Options{})
	enq := queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	const stream = "dev-learning-certificate-lifecycle"
	api := &API{
		Ledger: l, Token: token, Inspector: insp, Queue: queue.Queue, QueuedJob: l.QueuedJob,
		EraseDeadLetters: func(ctx context.Context, uid int64) (int, error) {
			return eventbus.EraseDeadLetters(ctx, rdb, []string{stream}, uid)
		},
	}
	e := echo.New()
	api.Register(e.Group(""))

	at := time.Now().Add(-time.Hour).UnixMicro()
	for _, uid := range []int64{7, 8} {
		for _, class := range []string{"ClassA", "ClassB"} {
			k, err := applyAward(ctx, l, uid, class, at)
			if err != nil {
				t.Fatal(err)
			}
			if err := enq.Enqueue(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.RecordEvent(ctx, ledger.EventRecord{ID: "ev-" + string(rune('0'+uid)), UserID: uid, Status: "accepted"}); err != nil {
			t.Fatal(err)
		}
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream + ".dead", Values: map[string]any{"user_id": uid, "reason": "undecodable"}})
	}

	req := httptest.NewRequest(http.MethodDelete, "/v1/learners/7", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("erase answered %d %s", rec.Code, rec.Body)
	}
	want := `"dead_letters":1,"events":1,"jobs":2`
	if body := rec.Body.String(); !strings.Contains(body, want) || !strings.Contains(body, `"rows":2`) {
		t.Fatalf("erase answer %s, want %s and 2 rows", body, want)
	}
	q, err := insp.GetQueueInfo(queue.Queue)
	if err != nil || q.Pending != 2 {
		t.Fatalf("the other learner's 2 jobs must stay, pending %v (%v)", q, err)
	}
	if n := rdb.XLen(ctx, stream+".dead").Val(); n != 1 {
		t.Fatalf("%d dead letters left, want the other learner's 1", n)
	}
	if rec, _ := l.FindEvent(ctx, "ev-7"); rec != nil {
		t.Fatal("the erased learner's event record survived")
	}
	if rows, _ := l.LearnerRows(ctx, 8); len(rows) != 2 {
		t.Fatalf("the other learner lost rows: %v", rows)
	}
	_, err = applyAward(ctx, l, 7, "ClassA", at)
	var erased *ledger.ErasedError
	if !errors.As(err, &erased) {
		t.Fatalf("a replay after the erase: %v, want *ledger.ErasedError", err)
	}
}
