package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/testutil"
)

// guardHost records the order of host calls; its award blocks until the caller gives up, as a
// POST whose answer never comes (the host may still commit it).
type guardHost struct {
	mu      sync.Mutex
	calls   []string
	holds   []badgehost.Assertion // what a look-up finds
	block   bool
	started chan struct{} // closed when a blocked award is in flight
}

func (h *guardHost) record(op string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, op)
}

// take returns the calls so far and forgets them.
func (h *guardHost) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.calls
	h.calls = nil
	return c
}

func (h *guardHost) Lookup(context.Context, string, []string) ([]badgehost.Assertion, error) {
	h.record("list")
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.holds), nil
}

func (h *guardHost) Award(ctx context.Context, class string, req badgehost.AwardRequest) (badgehost.Assertion, error) {
	h.record("award")
	h.mu.Lock()
	block := h.block
	h.mu.Unlock()
	if block {
		close(h.started)
		<-ctx.Done()
		return badgehost.Assertion{}, errors.New("award: timeout")
	}
	a := badgehost.Assertion{EntityID: "A-new", BadgeClass: class, Recipient: req.Email, CreatedAt: time.Now()}
	h.mu.Lock()
	h.holds = append(h.holds, a)
	h.mu.Unlock()
	return a, nil
}

func (h *guardHost) BadgeClass(_ context.Context, id string) (badgehost.BadgeClass, error) {
	return badgehost.BadgeClass{EntityID: id}, nil
}

func (h *guardHost) Revoke(context.Context, string, string) error {
	h.record("revoke")
	return nil
}

// Item 8 of issue 7: the attempt record written before the award POST is what stops a second
// award after a POST whose outcome is unknown. A job cancelled during a blocked POST leaves it;
// the next reconcile asks the host nothing until BRIDGE_SETTLE has passed, then looks the host
// up before any new POST, and posts nothing when the look-up finds the late-committed award.
func TestCancelledAwardIsNotRepeatedBeforeSettling(t *testing.T) {
	for _, committed := range []bool{true, false} {
		name := "host committed the cancelled award"
		if !committed {
			name = "host dropped the cancelled award"
		}
		t.Run(name, func(t *testing.T) { testCancelledAward(t, committed) })
	}
}

func testCancelledAward(t *testing.T, committed bool) {
	const settle = 5 * time.Minute
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	t0 := time.Now().Truncate(time.Millisecond)
	o := newOwedRow(t, 77, t0.Add(-time.Hour))
	l, enq, k := o.l, o.enq, o.k

	host := &guardHost{block: true, started: make(chan struct{})}
	var mu sync.Mutex
	now := t0
	setNow := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	rec := &Reconciler{Ledger: l, Host: host, Scheduler: enq, Log: log, Settle: settle, Lease: time.Minute, MaxRetry: 3,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}

	// The job is cancelled (shutdown, task timeout) while its POST hangs.
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Reconcile(jctx, k) }()
	select {
	case <-host.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("no award POST; host calls %v", host.take())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("cancelled reconcile: %v", err)
	}
	if got := host.take(); !slices.Equal(got, []string{"list", "award"}) {
		t.Fatalf("first reconcile called %v, want a look-up and one award", got)
	}
	host.mu.Lock()
	host.block = false
	if committed {
		// Badgr committed the POST after the client gave up.
		host.holds = []badgehost.Assertion{{EntityID: "A-late", BadgeClass: testutil.ClassCert, Recipient: "guard@example.org", CreatedAt: t0}}
	}
	host.mu.Unlock()

	// Before BRIDGE_SETTLE: the next reconcile must not call the host at all.
	setNow(t0.Add(settle - time.Second))
	if err := rec.Reconcile(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got := host.take(); len(got) != 0 {
		t.Fatalf("reconcile %s after an unresolved POST called the host %v: it must wait BRIDGE_SETTLE (%s)", settle-time.Second, got, settle)
	}
	r, err := l.Read(ctx, k)
	if err != nil || r == nil {
		t.Fatalf("read: %+v %v", r, err)
	}
	if r.AttemptAt.IsZero() || r.NextCheck.Before(t0.Add(settle)) {
		t.Fatalf("row after the early reconcile: attempt_at=%v next_check=%v, want the attempt kept and a check after settling", r.AttemptAt, r.NextCheck)
	}

	// After BRIDGE_SETTLE: a look-up first; a POST only when it finds nothing.
	setNow(t0.Add(settle + time.Second))
	if err := rec.Reconcile(ctx, k); err != nil {
		t.Fatal(err)
	}
	got := host.take()
	if len(got) == 0 || got[0] != "list" {
		t.Fatalf("settled reconcile called %v, want a look-up before anything else", got)
	}
	posts := 0
	for _, c := range got {
		if c == "award" {
			posts++
		}
	}
	want, entity := 0, "A-late"
	if !committed {
		want, entity = 1, "A-new"
	}
	if posts != want {
		t.Fatalf("settled reconcile called %v: %d award POSTs, want %d", got, posts, want)
	}
	r, err = l.Read(ctx, k)
	if err != nil || r == nil || r.State != ledger.StateIssued || r.EntityID != entity || !r.AttemptAt.IsZero() {
		t.Fatalf("row after settling: %+v %v, want issued as %s with the attempt resolved", r, err, entity)
	}
}
