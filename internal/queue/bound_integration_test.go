package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/reconcile"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

// heldHost already holds every badge asked about: a reconcile looks it up and records it.
type heldHost struct{ lists, awards atomic.Int64 }

func (h *heldHost) Lookup(_ context.Context, class string, emails []string) ([]badgehost.Assertion, error) {
	h.lists.Add(1)
	return []badgehost.Assertion{{EntityID: "A-" + emails[0], BadgeClass: class, Recipient: emails[0],
		CreatedAt: time.Unix(1700000000, 0)}}, nil
}

func (h *heldHost) Award(context.Context, string, badgehost.AwardRequest) (badgehost.Assertion, error) {
	h.awards.Add(1)
	return badgehost.Assertion{}, errors.New("heldHost: no award expected")
}

func (h *heldHost) Revoke(context.Context, string, string) error { return nil }

func (h *heldHost) BadgeClass(_ context.Context, id string) (badgehost.BadgeClass, error) {
	return badgehost.BadgeClass{EntityID: id}, nil
}

// queued counts the reconcile tasks asynq holds that will still run.
func queued(t *testing.T, insp *asynq.Inspector) int {
	t.Helper()
	q, err := insp.GetQueueInfo(Queue)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("queue info: %v", err)
	}
	return q.Pending + q.Scheduled + q.Retry + q.Active + q.Aggregating
}

// Item 1 of issue 7: with the workers stopped, neither the sweeper (for several periods) nor
// repeated intake of the same rows queues more than one job per owed row; a job the queue lost
// or archived is replaced; once workers run, everything drains.
func TestOneJobPerOwedRow(t *testing.T) {
	const n = 10000
	srv := testutil.StartRedis(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	m, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		t.Fatal(err)
	}
	// A short grace and re-queue period, so the rows come due many times during the test.
	l := ledger.New(rdb, ledger.Options{IntakeGrace: 200 * time.Millisecond})
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, 20*time.Second)
	enq.Bursts = false // this test is about the job per row
	insp := asynq.NewInspectorFromRedisClient(rdb)
	in := &intake.Intake{Ledger: l, Mapping: m, Enqueuer: enq, Log: log}
	keys := make([]ledger.RowKey, n)
	for i := range keys {
		keys[i] = ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: int64(100000 + i)}
	}
	at := time.Now().Add(-time.Hour)
	parallel(t, keys, func(k ledger.RowKey) error {
		// No event id: intake then writes no event record, which this test does not need.
		ev := testutil.CertEvent("", k.UserID, fmt.Sprintf("l%d@example.org", k.UserID), edx.TypeCertificateCreated, "downloadable", at)
		res, err := in.Handle(ctx, ev, "test")
		if err == nil && res.Status != intake.StatusAccepted {
			err = fmt.Errorf("intake of %s: %s", k, res.Message)
		}
		return err
	})
	if got := queued(t, insp); got != n {
		t.Fatalf("%d tasks after intake of %d rows, want one each", got, n)
	}

	// Workers stopped: the sweeper runs for several re-queue periods while the same rows are
	// enqueued again and again, as a resending LMS or a backfill would.
	sw := &Sweeper{Ledger: l, Enqueuer: enq, Inspector: insp, Log: log, Interval: 50 * time.Millisecond, Requeue: 300 * time.Millisecond}
	sctx, stopSweeper := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); sw.Run(sctx) }()
	stopped := false
	stopBackground := func() {
		if !stopped {
			stopped = true
			stopSweeper()
			bg.Wait()
		}
	}
	defer stopBackground()

	phase := time.Now().Add(3 * time.Second)
	bg.Add(1)
	go func() {
		defer bg.Done()
		for sctx.Err() == nil {
			for _, k := range keys {
				if err := enq.Enqueue(sctx, k); err != nil && sctx.Err() == nil {
					t.Errorf("enqueue %s: %v", k, err)
					return
				}
			}
		}
	}()
	worst := 0
	for time.Now().Before(phase) {
		if got := queued(t, insp); got > worst {
			worst = got
		}
		time.Sleep(100 * time.Millisecond)
	}
	if worst > n {
		t.Fatalf("%d tasks queued for %d owed rows with the workers stopped", worst, n)
	}

	// Jobs the queue lost (a deleted task) or parked (archived) are replaced by the sweeper.
	lost, parked := keys[17], keys[4242]
	lostID, _ := l.QueuedJob(ctx, lost)
	parkedID, _ := l.QueuedJob(ctx, parked)
	if lostID == "" || parkedID == "" {
		t.Fatalf("rows without a queued job: %q %q", lostID, parkedID)
	}
	if err := insp.DeleteTask(Queue, lostID); err != nil {
		t.Fatal(err)
	}
	if err := insp.ArchiveTask(Queue, parkedID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, c := range []struct {
		k   ledger.RowKey
		old string
	}{{lost, lostID}, {parked, parkedID}} {
		for {
			id, err := l.QueuedJob(ctx, c.k)
			if err != nil {
				t.Fatal(err)
			}
			if id != "" && id != c.old {
				info, err := insp.GetTaskInfo(Queue, id)
				if err != nil || info.State != asynq.TaskStatePending {
					t.Fatalf("replacement job %s of %s: %v %v", id, c.k, info, err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sweeper never replaced job %s of row %s (slot %q)", c.old, c.k, id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, err := insp.GetTaskInfo(Queue, parkedID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("the archived copy of a replaced job stays: %v", err)
	}
	stopBackground()
	if got := queued(t, insp); got > n {
		t.Fatalf("%d tasks queued for %d owed rows", got, n)
	}

	// Workers start: every row is reconciled and the queue drains, never holding more than one
	// waiting job per owed row plus the jobs in flight.
	const concurrency = 16
	host := &heldHost{}
	rec := &reconcile.Reconciler{Ledger: l, Host: host, Scheduler: enq, Log: log, Settle: time.Second, Lease: 5 * time.Second, MaxRetry: 3}
	wsw := &Sweeper{Ledger: l, Enqueuer: enq, Log: log, Interval: 50 * time.Millisecond, Requeue: 300 * time.Millisecond}
	w := NewWorker(rdb, WorkerConfig{Concurrency: concurrency, ShutdownGrace: 2 * time.Second}, rec, wsw, log)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	deadline = time.Now().Add(60 * time.Second)
	for {
		owed, _, err := l.Owed(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got := queued(t, insp)
		if got > int(owed)+concurrency {
			t.Fatalf("%d tasks queued for %d owed rows while draining", got, owed)
		}
		if owed == 0 && got == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained: %d rows owed, %d tasks queued", owed, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if host.awards.Load() != 0 {
		t.Fatalf("%d award POSTs for badges the host already held", host.awards.Load())
	}
	for _, k := range []ledger.RowKey{keys[0], lost, parked, keys[n-1]} {
		r, err := l.Read(ctx, k)
		if err != nil || r == nil || r.State != ledger.StateIssued {
			t.Fatalf("row %s after draining: %+v %v", k, r, err)
		}
	}
	if lists := host.lists.Load(); lists < n || lists > 2*n {
		t.Fatalf("%d look-ups for %d rows: want about one each", lists, n)
	}
}

// parallel runs f for every key on a few goroutines and fails the test on the first error.
func parallel(t *testing.T, keys []ledger.RowKey, f func(ledger.RowKey) error) {
	t.Helper()
	work := make(chan ledger.RowKey)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if err := f(k); err != nil {
					failed.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
}
