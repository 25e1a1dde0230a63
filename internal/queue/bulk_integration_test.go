package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/testutil"
)

const (
	routeBatch     = "POST /v2/badgeclasses/{id}/issue"
	routeAward     = "POST /v2/badgeclasses/{id}/assertions"
	routeList      = "GET /v2/badgeclasses/{id}/assertions"
	routeToken     = "POST /o/token"
	bulkTestWait   = 60 * time.Second
	bulkTestPeriod = 50 * time.Millisecond
)

// noJobs is an intake Enqueuer that queues nothing: the rows stay owed until the sweeper finds
// them due, as after a host outage or a lost queue.
type noJobs struct{}

func (noJobs) Enqueue(context.Context, ledger.RowKey) error { return nil }

// intakeMany feeds n certificates of learners first, first+1, … through in.
func intakeMany(t *testing.T, in *intake.Intake, first int64, n int) {
	t.Helper()
	for i := range int64(n) {
		uid := first + i
		ev := testutil.CertEvent(fmt.Sprintf("bulk-%d", uid), uid, fmt.Sprintf("learner%d@example.org", uid), edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
		if res, err := in.Handle(context.Background(), ev, "test"); err != nil || res.Status != intake.StatusAccepted {
			t.Fatalf("intake: %+v %v", res, err)
		}
	}
}

// waitAwarded waits until the sandbox holds n unrevoked assertions, one per learner.
func (p *pipeline) waitAwarded(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(bulkTestWait)
	for time.Now().Before(deadline) {
		got := p.unrevoked()
		if len(got) == n {
			for r, c := range got {
				if c != 1 {
					t.Fatalf("%s holds %d assertions", r, c)
				}
			}
			return
		}
		time.Sleep(bulkTestPeriod)
	}
	t.Fatalf("%d learners awarded after %s, want %d", len(p.unrevoked()), bulkTestWait, n)
}

// A backfill through the real worker, badgr client and sandbox: 250 learners cost one class
// listing and three batch awards, no single award and no per-learner look-up.
func TestBackfillIsAwardedInBatches(t *testing.T) {
	p := newPipeline(t)
	p.intake.Enqueuer = NewBulkEnqueuer(p.intake.Enqueuer.(*Enqueuer))
	intakeMany(t, p.intake, 1000, 250)
	p.waitAwarded(t, 250)
	req := p.sandbox.Requests()
	if req[routeBatch] != 3 || req[routeAward] != 0 || req[routeList] != 1 {
		t.Fatalf("requests %v; want 3 batch awards, 1 class listing, no single award", req)
	}
}

// Rows owed with no job, found due by the sweeper: a class with at least BulkMin of them goes
// to a bulk run; fewer get a job each.
func TestSweeperHandsBurstsToBulkRuns(t *testing.T) {
	for _, tc := range []struct {
		n          int
		wantBatch  bool
		wantSingle int
	}{{n: BulkMin + 10, wantBatch: true}, {n: BulkMin - 5, wantSingle: BulkMin - 5}} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			p := newPipeline(t)
			enq := p.intake.Enqueuer
			p.intake.Enqueuer = noJobs{}
			intakeMany(t, p.intake, 2000, tc.n)
			p.intake.Enqueuer = enq
			p.waitAwarded(t, tc.n)
			req := p.sandbox.Requests()
			if (req[routeBatch] > 0) != tc.wantBatch || req[routeAward] != tc.wantSingle {
				t.Fatalf("requests %v; want batch awards %v, %d single awards", req, tc.wantBatch, tc.wantSingle)
			}
		})
	}
}

// A burst of live events of one badge class (BulkMin or more within a second) goes to a bulk
// run from the BulkMin-th row on; the rows before it get a job each.
func TestLiveBurstIsAwardedInBatches(t *testing.T) {
	p := newPipeline(t)
	n := BulkMin + 80
	intakeMany(t, p.intake, 3000, n)
	p.waitAwarded(t, n)
	req := p.sandbox.Requests()
	if req[routeBatch] == 0 || req[routeAward] > BulkMin {
		t.Fatalf("requests %v; want batch awards and at most %d single awards", req, BulkMin)
	}
}
