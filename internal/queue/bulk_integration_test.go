package queue

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

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

// A backfill through the real worker, badgr client and sandbox: 250 learners are awarded in
// batches, at most 0.05 host requests per award (issue 10's bulk target), with no single award.
// The run works while the intake still adds rows, so how many batches it takes depends on the
// timing (three when the intake stays ahead; reconcile's TestBulkRunAwardsInBatches pins that).
func TestBackfillIsAwardedInBatches(t *testing.T) {
	p := newPipeline(t)
	p.intake.Enqueuer = NewBulkEnqueuer(p.intake.Enqueuer.(*Enqueuer))
	const n = 250
	intakeMany(t, p.intake, 1000, n)
	p.waitAwarded(t, n)
	req := p.sandbox.Requests()
	if host := req[routeBatch] + req[routeList]; req[routeBatch] == 0 || req[routeAward] != 0 || float64(host)/n > 0.05 {
		t.Fatalf("requests %v; want batch awards, no single award, at most %.0f requests", req, 0.05*n)
	}
}

// Rows owed with no job, found due by the sweeper: a class with at least BulkMin of them goes
// to a bulk run; fewer get a job each. (The rows come due over the time their intake took, so
// a sweep may find the first BulkMin due and the last few alone: those get a job each.)
func TestSweeperHandsBurstsToBulkRuns(t *testing.T) {
	for _, tc := range []struct {
		n          int
		wantBatch  bool
		maxSingle  int
		wantSingle int
	}{{n: BulkMin + 10, wantBatch: true, maxSingle: 10}, {n: BulkMin - 5, maxSingle: BulkMin - 5, wantSingle: BulkMin - 5}} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			p := newPipeline(t)
			enq := p.intake.Enqueuer
			p.intake.Enqueuer = noJobs{}
			intakeMany(t, p.intake, 2000, tc.n)
			p.intake.Enqueuer = enq
			p.waitAwarded(t, tc.n)
			req := p.sandbox.Requests()
			if (req[routeBatch] > 0) != tc.wantBatch || req[routeAward] < tc.wantSingle || req[routeAward] > tc.maxSingle {
				t.Fatalf("requests %v; want batch awards %v, %d to %d single awards", req, tc.wantBatch, tc.wantSingle, tc.maxSingle)
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
	// BulkMin − 1 rows go alone before the burst is seen, again in each further second the
	// intake takes (a loaded machine): most of the rows must still go in batches.
	if req[routeBatch] == 0 || req[routeAward] >= n/2 {
		t.Fatalf("requests %v; want batch awards and fewer than %d single awards", req, n/2)
	}
}

// blockedRuns is a Reconciler whose bulk runs never take the class's lease and block: what
// asynq shows after a failover lost a finished run's "done" mark (active, no run working).
type blockedRuns struct {
	mu    sync.Mutex
	ids   []string
	block chan struct{}
}

func (b *blockedRuns) Run(context.Context, ledger.RowKey, string) error { return nil }

func (b *blockedRuns) RunBulk(ctx context.Context, class string) error {
	id, _ := asynq.GetTaskID(ctx)
	b.mu.Lock()
	b.ids = append(b.ids, id)
	first := len(b.ids) == 1
	b.mu.Unlock()
	if first {
		select {
		case <-b.block:
		case <-ctx.Done():
		}
	}
	return nil
}

func (b *blockedRuns) taskIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ids)
}

// A bulk task asynq keeps active while no run holds the class's lease does not hold the class
// up until asynq's recoverer: the sweeper queues a run under an id of its own.
func TestStaleActiveBulkRunIsReplaced(t *testing.T) {
	rdb := testutil.StartRedis(t).Client(t)
	log := slog.New(slog.DiscardHandler)
	l := ledger.New(rdb, ledger.Options{})
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, 20*time.Second)
	rec := &blockedRuns{block: make(chan struct{})}
	defer close(rec.block)
	sw := &Sweeper{Ledger: l, Enqueuer: enq, Log: log, Interval: 100 * time.Millisecond, Requeue: 6 * time.Second}
	w := NewWorker(rdb, WorkerConfig{Concurrency: 4, ShutdownGrace: time.Second}, rec, sw, log)
	ctx := context.Background()
	if err := l.AddBulk(ctx, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 7}); err != nil {
		t.Fatal(err)
	}
	if err := enq.EnqueueBulk(ctx, testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	deadline := time.Now().Add(15 * time.Second)
	for len(rec.taskIDs()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("bulk runs started %v; want a second one under another id while the first is stuck", rec.taskIDs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ids := rec.taskIDs()
	if ids[0] != "bulk:"+testutil.ClassCert || ids[1] == ids[0] {
		t.Fatalf("task ids %v", ids)
	}
}
