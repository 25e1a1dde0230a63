package backfill

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/testutil"
)

// TestBackfillThroughRealIntake runs a CSV through the live intake on a real redis-server: the
// rows land in the ledger, and a second run of the same file is recognised as duplicates.
func TestBackfillThroughRealIntake(t *testing.T) {
	srv := testutil.StartRedis(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	m := parseMapping(t)
	l := ledger.New(rdb, ledger.Options{})
	// The client shares rdb's pool, which the test's cleanup closes; asynq refuses to close it.
	in := &intake.Intake{Ledger: l, Mapping: m, Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute)}

	input := "user_id,email,course_key,mode,issued_on,name\n" +
		"101,alice@example.com," + demoCourse + ",honor,2024-05-27 12:25:45.678901+00:00,Alice\n" +
		"102,bob.b@example.org," + demoCourse + ",verified,2024-05-28,Bob\n" +
		"103,carol@example.net,course-v1:OpenedX+DemoX+2025,honor,2024-06-01T08:00:00Z,\n"
	backfill := func() (Summary, string) {
		t.Helper()
		var out bytes.Buffer
		sum, err := Run(ctx, strings.NewReader(input), "learners.csv", Options{
			Apply: true, Mapping: m, Handler: in, Out: &out, Now: time.Now,
		})
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, out.String())
		}
		return sum, out.String()
	}

	sum, out := backfill()
	if want := (Summary{Lines: 3, Events: 3, Accepted: 3}); sum != want {
		t.Fatalf("first run: Summary = %+v, want %+v\n%s", sum, want, out)
	}
	rows, err := l.List(ctx, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("ledger has %d rows, want 3", len(rows))
	}
	for i, r := range rows {
		if want := (ledger.RowKey{BadgeClass: "DemoBadge-1", UserID: int64(101 + i)}); r.Key != want {
			t.Errorf("row %d: key %v, want %v", i, r.Key, want)
		}
		if r.State != ledger.StatePending {
			t.Errorf("row %v: state %q, want %q", r.Key, r.State, ledger.StatePending)
		}
	}
	rec, err := l.FindEvent(ctx, eventID(101, demoCourse, time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC)))
	if err != nil || rec == nil {
		t.Fatalf("event record of line 2: %v, %v", rec, err)
	}
	if rec.Via != Via || rec.Status != intake.StatusAccepted || rec.UserID != 101 {
		t.Errorf("event record %+v: want via backfill, accepted, user 101", rec)
	}

	sum, out = backfill()
	if want := (Summary{Lines: 3, Events: 3, Duplicate: 3}); sum != want {
		t.Errorf("second run: Summary = %+v, want %+v\n%s", sum, want, out)
	}
	if again, err := l.List(ctx, ledger.Filter{}); err != nil || len(again) != 3 {
		t.Errorf("after the second run: %d rows (%v), want 3", len(again), err)
	}
	noEmail(t, out)
}
