package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/testutil"
)

// bulkHost is a badge host with batch awards and class listings, in memory. Its batch answers
// come back shuffled, so rows matched by position would get other learners' assertions.
type bulkHost struct {
	mu       sync.Mutex
	holds    map[string][]badgehost.Assertion // by recipient
	calls    map[string]int
	batches  []int // items per batch award
	n        int
	noBatch  bool                                // 404/405 on the batch route
	drop     map[string]bool                     // recipients left out of batch answers (created or not)
	refuse   map[string]error                    // per-item errors
	batchErr error                               // the whole batch fails
	created  map[string]bool                     // recipients the host created in a batch
	onBatch  func(reqs []badgehost.AwardRequest) // called before answering
	listErr  error
	lookedUp [][]string
}

func newBulkHost() *bulkHost {
	return &bulkHost{holds: map[string][]badgehost.Assertion{}, calls: map[string]int{}, drop: map[string]bool{}, refuse: map[string]error{}, created: map[string]bool{}}
}

func (h *bulkHost) newAssertion(class, email string) badgehost.Assertion {
	h.n++
	a := badgehost.Assertion{EntityID: fmt.Sprintf("A%05d", h.n), BadgeClass: class, Recipient: email, CreatedAt: time.Now().Add(time.Duration(h.n) * time.Microsecond)}
	h.holds[email] = append(h.holds[email], a)
	return a
}

func (h *bulkHost) Lookup(_ context.Context, _ string, emails []string) ([]badgehost.Assertion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["list"]++
	h.lookedUp = append(h.lookedUp, emails)
	var out []badgehost.Assertion
	for _, e := range emails {
		out = append(out, h.holds[strings.ToLower(e)]...)
	}
	return out, nil
}

func (h *bulkHost) Award(_ context.Context, class string, req badgehost.AwardRequest) (badgehost.Assertion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["award"]++
	if len(h.holds[req.Email]) > 0 {
		return badgehost.Assertion{}, badgehost.ErrAlreadyAwarded
	}
	return h.newAssertion(class, req.Email), nil
}

func (h *bulkHost) Revoke(context.Context, string, string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["revoke"]++
	return nil
}

func (h *bulkHost) BadgeClass(_ context.Context, id string) (badgehost.BadgeClass, error) {
	return badgehost.BadgeClass{EntityID: id}, nil
}

func (h *bulkHost) ListClass(context.Context, string) ([]badgehost.Assertion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["list class"]++
	if h.listErr != nil {
		return nil, h.listErr
	}
	var out []badgehost.Assertion
	for _, as := range h.holds {
		out = append(out, as...)
	}
	return out, nil
}

func (h *bulkHost) AwardBatch(_ context.Context, class string, reqs []badgehost.AwardRequest) (map[string]badgehost.BatchResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["batch award"]++
	if h.noBatch {
		return nil, fmt.Errorf("batch award: 405: %w", badgehost.ErrBatchUnsupported)
	}
	if h.onBatch != nil {
		h.onBatch(reqs)
	}
	if h.batchErr != nil {
		return nil, h.batchErr
	}
	h.batches = append(h.batches, len(reqs))
	out := map[string]badgehost.BatchResult{}
	order := rand.Perm(len(reqs))
	for _, i := range order {
		req := reqs[i]
		var res badgehost.BatchResult
		switch {
		case h.refuse[req.Email] != nil:
			res.Err = h.refuse[req.Email]
		case len(h.holds[req.Email]) > 0:
			res.Err = badgehost.ErrAlreadyAwarded
		default:
			res.Assertion = h.newAssertion(class, req.Email)
			h.created[req.Email] = true
		}
		if !h.drop[req.Email] {
			out[req.Email] = res
		}
	}
	return out, nil
}

func (h *bulkHost) count(op string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[op]
}

// bulkEnv is a fresh redis-server with n learners owed the test badge through the real intake,
// handed to bulk runs as backfill hands them.
type bulkEnv struct {
	rdb  *redis.Client
	l    *ledger.Ledger
	enq  *queue.Enqueuer
	host *bulkHost
	rec  *Reconciler
	keys []ledger.RowKey
}

func email(uid int64) string { return fmt.Sprintf("learner%d@example.org", uid) }

func newBulkEnv(t *testing.T, n int) *bulkEnv {
	t.Helper()
	rdb, l, enq, in := newIntake(t, true)
	e := &bulkEnv{rdb: rdb, l: l, enq: enq, host: newBulkHost()}
	for i := range n {
		uid := int64(1000 + i)
		ev := testutil.CertEvent(fmt.Sprintf("bulk-%d", uid), uid, email(uid), edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
		if res, err := in.Handle(context.Background(), ev, "test"); err != nil || res.Status != intake.StatusAccepted {
			t.Fatalf("intake: %+v %v", res, err)
		}
		e.keys = append(e.keys, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: uid})
	}
	e.rec = &Reconciler{Ledger: l, Host: e.host, Scheduler: enq, Log: slog.New(slog.DiscardHandler), Settle: time.Minute, Lease: time.Minute, MaxRetry: 3}
	return e
}

func (e *bulkEnv) row(t *testing.T, k ledger.RowKey) *ledger.Row {
	t.Helper()
	r, err := e.l.Read(context.Background(), k)
	if err != nil || r == nil {
		t.Fatalf("read %s: %v %v", k, r, err)
	}
	return r
}

// A backfill of 250 learners is awarded in 3 batch awards after one class listing: 4 host
// requests, each row holding the assertion made for its own learner.
func TestBulkRunAwardsInBatches(t *testing.T) {
	e := newBulkEnv(t, 250)
	if err := e.rec.RunBulk(context.Background(), testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	h := e.host
	if got := fmt.Sprint(h.batches); got != "[100 100 50]" {
		t.Errorf("batches %s, want [100 100 50]", got)
	}
	if h.count("list class") != 1 || h.count("list") != 0 || h.count("award") != 0 {
		t.Errorf("calls %v, want one class listing, no look-up, no single award", h.calls)
	}
	for _, k := range e.keys {
		r := e.row(t, k)
		want := h.holds[email(k.UserID)]
		if r.State != ledger.StateIssued || len(want) != 1 || r.EntityID != want[0].EntityID {
			t.Fatalf("row %s: state %s entity %s, host holds %v", k, r.State, r.EntityID, want)
		}
		if !r.AttemptAt.IsZero() || !r.NextCheck.IsZero() {
			t.Fatalf("row %s: attempt %v next check %v after a clean batch, want none", k, r.AttemptAt, r.NextCheck)
		}
	}
	if n, _ := e.l.BulkWaiting(context.Background(), testutil.ClassCert); n != 0 {
		t.Errorf("%d rows still waiting", n)
	}
}

// Few rows waiting in a class with many rows: looking the waiting learners up costs fewer
// requests than listing the class (520 rows: 2 pages; 5 learners: 1 look-up), so the batch is
// looked up by recipient.
func TestBulkRunLooksUpWhenListingCostsMore(t *testing.T) {
	e := newBulkEnv(t, 520)
	ctx := context.Background()
	if _, err := e.l.TakeBulk(ctx, testutil.ClassCert, 515); err != nil {
		t.Fatal(err)
	}
	if err := e.rec.RunBulk(ctx, testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	h := e.host
	if h.count("list class") != 0 || h.count("list") != 1 || fmt.Sprint(h.batches) != "[5]" {
		t.Fatalf("calls %v batches %v, want one look-up and one batch of 5", h.calls, h.batches)
	}
	if len(h.lookedUp) != 1 || len(h.lookedUp[0]) != 5 {
		t.Fatalf("looked up %v, want the 5 waiting learners at once", h.lookedUp)
	}
	for _, k := range e.keys[515:] {
		if r := e.row(t, k); r.State != ledger.StateIssued {
			t.Fatalf("row %s: %s, want issued", k, r.State)
		}
	}
}

// Rows the batch cannot settle cleanly: one the host already holds (found by the listing: kept,
// not sent), one left out of the answer and one refused as a duplicate (both unresolved: the
// attempt stays and the row is verified after BRIDGE_SETTLE), one refused for good (parked).
func TestBulkRunSettlesEachRowFromItsOwnResult(t *testing.T) {
	e := newBulkEnv(t, 10)
	h := e.host
	held, dropped, dup, bad := e.keys[0], e.keys[1], e.keys[2], e.keys[3]
	pre := h.newAssertion(testutil.ClassCert, email(held.UserID))
	h.drop[email(dropped.UserID)] = true
	h.refuse[email(dup.UserID)] = badgehost.ErrAlreadyAwarded
	h.refuse[email(bad.UserID)] = &badgehost.PermanentError{Reason: "recipient refused", Err: errors.New("refused")}
	var sent []string
	h.onBatch = func(reqs []badgehost.AwardRequest) {
		for _, r := range reqs {
			sent = append(sent, r.Email)
		}
	}
	before := time.Now()
	if err := e.rec.RunBulk(context.Background(), testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 9 || strings.Contains(strings.Join(sent, " "), email(held.UserID)) {
		t.Fatalf("batch held %v; want the 9 learners without an assertion", sent)
	}
	if r := e.row(t, held); r.State != ledger.StateIssued || r.EntityID != pre.EntityID {
		t.Errorf("held row: %s %s, want issued with %s", r.State, r.EntityID, pre.EntityID)
	}
	for _, k := range []ledger.RowKey{dropped, dup} {
		r := e.row(t, k)
		if r.State != ledger.StatePending || r.AttemptAt.Before(before) || r.NextCheck.Before(before.Add(59*time.Second)) {
			t.Errorf("unresolved row %s: state %s attempt %v next %v; want pending, attempt kept, verified after settling", k, r.State, r.AttemptAt, r.NextCheck)
		}
	}
	if r := e.row(t, bad); r.State != ledger.StateFailed || r.Reason != "recipient refused" || !r.AttemptAt.IsZero() {
		t.Errorf("refused row: %s %q attempt %v; want failed with the host's reason, no attempt", r.State, r.Reason, r.AttemptAt)
	}
	for _, k := range e.keys[4:] {
		if r := e.row(t, k); r.State != ledger.StateIssued {
			t.Errorf("row %s: %s, want issued", k, r.State)
		}
	}
	if h.count("award") != 0 {
		t.Errorf("%d single awards, want none", h.count("award"))
	}
}

// A whole batch that fails with an unknown outcome (a timeout, a 5xx) keeps every attempt, and
// the rows are verified after settling; with a host that has no batch route the rows are awarded
// one by one, then and in later runs.
func TestBulkRunFailuresAndFallback(t *testing.T) {
	t.Run("unknown outcome", func(t *testing.T) {
		e := newBulkEnv(t, 5)
		e.host.batchErr = errors.New("batch award: 502")
		before := time.Now()
		if err := e.rec.RunBulk(context.Background(), testutil.ClassCert); err != nil {
			t.Fatal(err)
		}
		for _, k := range e.keys {
			r := e.row(t, k)
			if r.AttemptAt.Before(before) || r.Retries != 1 || r.NextCheck.Before(before.Add(59*time.Second)) {
				t.Fatalf("row %s: attempt %v retries %d next %v; want the attempt kept, one retry, not before settling", k, r.AttemptAt, r.Retries, r.NextCheck)
			}
		}
	})
	t.Run("refused as a whole", func(t *testing.T) {
		// Badgr saves items one by one after validating them all: a refusal while saving may
		// leave some saved, so no row is parked for it and every attempt stays.
		e := newBulkEnv(t, 5)
		e.host.batchErr = &badgehost.PermanentError{Reason: "You may not award this badge to this recipient.", Err: errors.New("400")}
		before := time.Now()
		if err := e.rec.RunBulk(context.Background(), testutil.ClassCert); err != nil {
			t.Fatal(err)
		}
		for _, k := range e.keys {
			r := e.row(t, k)
			if r.State == ledger.StateFailed || r.AttemptAt.Before(before) || r.Retries != 1 {
				t.Fatalf("row %s: %s attempt %v retries %d; want a retry with the attempt kept", k, r.State, r.AttemptAt, r.Retries)
			}
		}
	})
	t.Run("wait", func(t *testing.T) {
		// A wait sent nothing: the attempts are cleared and no retry is spent.
		e := newBulkEnv(t, 5)
		until := time.Now().Add(30 * time.Second)
		e.host.batchErr = &badgehost.WaitError{Until: until, Reason: "rate limited", Err: errors.New("429")}
		if err := e.rec.RunBulk(context.Background(), testutil.ClassCert); err != nil {
			t.Fatal(err)
		}
		for _, k := range e.keys {
			r := e.row(t, k)
			if !r.AttemptAt.IsZero() || r.Retries != 0 || r.NextCheck.Before(until) {
				t.Fatalf("row %s: attempt %v retries %d next %v; want no attempt, no retry, not before %v", k, r.AttemptAt, r.Retries, r.NextCheck, until)
			}
		}
	})
	t.Run("no batch route", func(t *testing.T) {
		e := newBulkEnv(t, 5)
		e.host.noBatch = true
		ctx := context.Background()
		if err := e.rec.RunBulk(ctx, testutil.ClassCert); err != nil {
			t.Fatal(err)
		}
		if e.host.count("batch award") != 1 || e.host.count("award") != 5 {
			t.Fatalf("calls %v, want one refused batch, then 5 single awards", e.host.calls)
		}
		for _, k := range e.keys {
			if r := e.row(t, k); r.State != ledger.StateIssued || !r.NextCheck.IsZero() {
				t.Fatalf("row %s: %s next %v, want issued without verification", k, r.State, r.NextCheck)
			}
		}
		// Later runs of the class do not try the batch route again.
		more := ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 99}
		_ = e.l.AddBulk(ctx, more)
		if err := e.rec.RunBulk(ctx, testutil.ClassCert); err != nil {
			t.Fatal(err)
		}
		if e.host.count("batch award") != 1 {
			t.Fatalf("batch route tried again: %v", e.host.calls)
		}
	})
}

// A row whose earlier award is unresolved and not settled at the look-up's time is not sent:
// it takes the single path, which waits BRIDGE_SETTLE.
func TestBulkRunLeavesUnsettledAttemptsAlone(t *testing.T) {
	e := newBulkEnv(t, 3)
	ctx := context.Background()
	k := e.keys[0]
	token, ok, err := e.l.Lock(ctx, k, time.Minute)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := e.l.Step(ctx, k, token, ledger.Fields{"attempt_at": time.Now(), "state": ledger.StatePending}); err != nil {
		t.Fatal(err)
	}
	_ = e.l.Unlock(ctx, k, token)
	if err := e.rec.RunBulk(ctx, testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(e.host.batches) != "[2]" || e.host.count("award") != 0 {
		t.Fatalf("batches %v calls %v; want the 2 other rows in one batch and nothing sent for the settling one", e.host.batches, e.host.calls)
	}
	if r := e.row(t, k); r.State != ledger.StatePending || r.NextCheck.IsZero() {
		t.Fatalf("settling row: %s next %v, want pending with a check after settling", r.State, r.NextCheck)
	}
}

// One bulk run of a class at a time: a run that finds the class's lease held does nothing (the
// holder takes the rows), and the lease is free again once a run ends.
func TestBulkRunsOfOneClassDoNotOverlap(t *testing.T) {
	e := newBulkEnv(t, 5)
	ctx := context.Background()
	token, ok, err := e.l.StartBulkRun(ctx, testutil.ClassCert, time.Minute)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := e.rec.RunBulk(ctx, testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	if n := len(e.host.calls); n != 0 {
		t.Fatalf("a second run called the host: %v", e.host.calls)
	}
	if n, _ := e.l.BulkWaiting(ctx, testutil.ClassCert); n != 5 {
		t.Fatalf("%d rows waiting, want the 5 left to the running run", n)
	}
	if err := e.l.EndBulkRun(ctx, testutil.ClassCert, token); err != nil {
		t.Fatal(err)
	}
	if err := e.rec.RunBulk(ctx, testutil.ClassCert); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(e.host.batches) != "[5]" {
		t.Fatalf("batches %v after the first run ended, want [5]", e.host.batches)
	}
	if running, _ := e.l.BulkRunning(ctx, testutil.ClassCert); running {
		t.Fatal("the run's lease outlived it")
	}
}

// singleOnly is a badge host without batch awards (no badgehost.Bulk), whose awards can run a
// hook.
type singleOnly struct {
	h       *bulkHost
	onAward func()
}

func (s singleOnly) Lookup(ctx context.Context, c string, e []string) ([]badgehost.Assertion, error) {
	return s.h.Lookup(ctx, c, e)
}
func (s singleOnly) Award(ctx context.Context, c string, r badgehost.AwardRequest) (badgehost.Assertion, error) {
	s.onAward()
	return s.h.Award(ctx, c, r)
}
func (s singleOnly) Revoke(ctx context.Context, id, reason string) error {
	return s.h.Revoke(ctx, id, reason)
}
func (s singleOnly) BadgeClass(ctx context.Context, id string) (badgehost.BadgeClass, error) {
	return s.h.BadgeClass(ctx, id)
}

// Awarding one by one renews the run's lease before each row: a run whose lease another run
// took over stops instead of working beside it, and leaves the other rows to it.
func TestBulkRunStopsWhenItsLeaseIsTaken(t *testing.T) {
	e := newBulkEnv(t, 5)
	ctx := context.Background()
	stolen := false
	e.rec.Host = singleOnly{h: e.host, onAward: func() {
		if !stolen {
			stolen = true
			e.rdb.Set(ctx, "bb:{bulk}:run:"+testutil.ClassCert, "another run", time.Minute)
		}
	}}
	err := e.rec.RunBulk(ctx, testutil.ClassCert)
	if !errors.Is(err, ledger.ErrLockLost) {
		t.Fatalf("RunBulk: %v, want ErrLockLost", err)
	}
	if n := e.host.count("award"); n != 1 {
		t.Fatalf("%d awards after the lease was taken, want the one in flight only", n)
	}
}
