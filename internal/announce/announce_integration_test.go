package announce

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/reconcile"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

const stream = "dev-learning-badges-lifecycle"

// rig is the real reconcile against the sandbox host, with the bridge's Redis and a separate
// event-bus Redis.
type rig struct {
	bridge, bus *testutil.RedisServer
	busRdb      *redis.Client
	sandbox     *sandbox.Host
	ledger      *ledger.Ledger
	intake      *intake.Intake
	rec         *reconcile.Reconciler
	pub         *Publisher
	host        *lossyHost

	mu     sync.Mutex
	offset time.Duration // added to the reconcile's clock
}

// lossyHost loses the answer to the next award once: the host commits it, the bridge hears an
// error, as when the worker dies between the host's 2xx and the row write.
type lossyHost struct {
	badgehost.Host
	mu         sync.Mutex
	loseNext   bool
	loseRevoke bool
}

func (h *lossyHost) Revoke(ctx context.Context, id, reason string) error {
	err := h.Host.Revoke(ctx, id, reason)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil && h.loseRevoke {
		h.loseRevoke = false
		return errors.New("revoke: connection reset")
	}
	return err
}

func (h *lossyHost) Award(ctx context.Context, class string, r badgehost.AwardRequest) (badgehost.Assertion, error) {
	a, err := h.Host.Award(ctx, class, r)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil && h.loseNext {
		h.loseNext = false
		return badgehost.Assertion{}, errors.New("award: connection reset")
	}
	return a, err
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{bridge: testutil.StartRedis(t), bus: testutil.StartRedis(t)}
	rdb := r.bridge.Client(t)
	r.busRdb = r.bus.Client(t)
	log := slog.New(slog.DiscardHandler)
	r.sandbox = sandbox.New(sandbox.Options{Username: "svc", Password: "pw-0123456789", BadgeClasses: []string{testutil.ClassCert}})
	hs := httptest.NewServer(r.sandbox)
	t.Cleanup(hs.Close)
	r.sandbox.SetBaseURL(hs.URL)
	r.host = &lossyHost{Host: badgr.New(badgr.Config{BaseURL: hs.URL, Username: "svc", Password: "pw-0123456789", Timeout: 2 * time.Second}, rdb, log)}
	m, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		t.Fatal(err)
	}
	r.ledger = ledger.New(rdb, ledger.Options{})
	enq := queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), r.ledger, time.Minute)
	r.intake = &intake.Intake{Ledger: r.ledger, Mapping: m, Enqueuer: enq, Log: log}
	r.rec = &reconcile.Reconciler{Ledger: r.ledger, Host: r.host, Scheduler: enq, Log: log, Settle: time.Minute,
		Lease: 30 * time.Second, MaxRetry: 5, Announce: true, Now: func() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return time.Now().Add(r.offset) }}
	r.pub = New(Config{Ledger: r.ledger, Bus: r.busRdb, Stream: stream, Host: r.host, Log: log,
		Meta: Meta{SourceHost: "test"}, Poll: 20 * time.Millisecond})
	return r
}

func (r *rig) later(d time.Duration) { r.mu.Lock(); r.offset += d; r.mu.Unlock() }

func (r *rig) event(t *testing.T, id, typ, status string, at time.Time) {
	t.Helper()
	ev := testutil.CertEvent(id, 77, "Learner@Example.org", typ, status, at)
	if res, err := r.intake.Handle(context.Background(), ev, "test"); err != nil || res.Status != intake.StatusAccepted {
		t.Fatalf("intake %s: %+v %v", id, res, err)
	}
}

func (r *rig) reconcile(t *testing.T) {
	t.Helper()
	if err := r.rec.Reconcile(context.Background(), ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 77}); err != nil {
		t.Fatal(err)
	}
}

// onBus reads the bus stream: the type, id and decoded badge of every entry.
func (r *rig) onBus(t *testing.T) []busEntry {
	t.Helper()
	msgs, err := r.busRdb.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []busEntry
	for _, m := range msgs {
		typ, _ := m.Values["type"].(string)
		id, _ := m.Values["id"].(string)
		data, _ := m.Values["event_data"].(string)
		out = append(out, busEntry{typ: typ, id: id, badge: decodePublished(t, typ, data)})
	}
	return out
}

type busEntry struct {
	typ, id string
	badge   wireBadge
}

func (r *rig) outboxLen(t *testing.T) int64 {
	t.Helper()
	s, err := r.ledger.OutboxStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Len
}

func (r *rig) cycle(t *testing.T) int {
	t.Helper()
	n, err := r.pub.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAwardThenRevokeAnnouncesTwoEntries(t *testing.T) {
	r := newRig(t)
	t0 := time.Now().Add(-time.Hour)
	r.event(t, "c-1", edx.TypeCertificateCreated, "downloadable", t0)
	r.reconcile(t)
	r.event(t, "r-1", edx.TypeCertificateRevoked, "unavailable", t0.Add(time.Minute))
	r.reconcile(t)
	if n := r.cycle(t); n != 2 {
		t.Fatalf("published %d, want 2", n)
	}
	if r.outboxLen(t) != 0 {
		t.Fatal("published entries stay in the outbox")
	}
	got := r.onBus(t)
	as := r.sandbox.Assertions(testutil.ClassCert)
	if len(got) != 2 || len(as) != 1 || !as[0].Revoked {
		t.Fatalf("bus %+v, host %+v", got, as)
	}
	obi := as[0].OpenBadgeID
	if got[0].typ != TypeAwarded || got[1].typ != TypeRevoked ||
		got[0].id != EventID(ledger.AnnounceAwarded, obi) || got[1].id != EventID(ledger.AnnounceRevoked, obi) {
		t.Fatalf("types and ids %+v", got)
	}
	for _, e := range got {
		b := e.badge.Badge
		if b.UUID != BadgeUUID(obi) || b.User.ID != 77 || !b.User.IsActive || b.User.PII.Email != "learner@example.org" {
			t.Fatalf("badge %+v", b)
		}
		if b.Template.Origin != "badgr" || b.Template.Name == nil || *b.Template.Name != "Sandbox badge "+testutil.ClassCert ||
			b.Template.ImageURL == nil || *b.Template.ImageURL == "" {
			t.Fatalf("template %+v", b.Template)
		}
	}
	// A second reconcile of the settled row changes nothing and announces nothing.
	r.later(2 * time.Minute)
	r.reconcile(t)
	if r.outboxLen(t) != 0 {
		t.Fatal("a reconcile that changed nothing announced something")
	}
}

// A publisher that dies between its XADD and the removal sends the entry again, with the same
// event id: at least once, and consumers de-duplicate.
func TestCrashBetweenPublishAndRemovalResends(t *testing.T) {
	r := newRig(t)
	r.event(t, "c-1", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	r.reconcile(t)
	r.pub.beforeRemove = func() error { return errors.New("crash") }
	if _, err := r.pub.Cycle(context.Background()); err == nil {
		t.Fatal("the simulated crash went unnoticed")
	}
	r.pub.beforeRemove = nil
	if r.outboxLen(t) != 1 {
		t.Fatal("the entry left the outbox before the crash point")
	}
	r.cycle(t)
	got := r.onBus(t)
	if len(got) != 2 || got[0].id != got[1].id || got[0].typ != TypeAwarded {
		t.Fatalf("bus %+v: want the same award twice", got)
	}
	if r.outboxLen(t) != 0 {
		t.Fatal("the resent entry stays in the outbox")
	}
}

// While the event-bus Redis is down, announcements wait in the outbox; Run backs off and sends
// them once it is back.
func TestBusDownEntriesWaitInTheOutbox(t *testing.T) {
	r := newRig(t)
	r.bus.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.pub.Run(ctx) }()
	defer func() { cancel(); <-done }()

	r.event(t, "c-1", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	r.reconcile(t)
	time.Sleep(300 * time.Millisecond)
	if r.outboxLen(t) != 1 {
		t.Fatalf("outbox %d while the bus is down, want 1", r.outboxLen(t))
	}
	r.bus.Restart(t)
	deadline := time.Now().Add(15 * time.Second)
	for r.outboxLen(t) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the outbox did not drain once the bus was back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := r.onBus(t); len(got) != 1 || got[0].typ != TypeAwarded {
		t.Fatalf("bus %+v", got)
	}
}

// The host commits an award whose answer the bridge never hears (as a crash between the 2xx and
// the row write): the attempt mark makes the pass that finds it by look-up announce it.
func TestLostAwardAnswerIsAnnouncedByTheNextPass(t *testing.T) {
	r := newRig(t)
	r.host.loseNext = true
	r.event(t, "c-1", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	r.reconcile(t)
	if r.outboxLen(t) != 0 {
		t.Fatal("announced an award the bridge has not confirmed")
	}
	if n := len(r.sandbox.Assertions(testutil.ClassCert)); n != 1 {
		t.Fatalf("host holds %d assertions, want the committed one", n)
	}
	r.later(2 * time.Minute) // past BRIDGE_SETTLE
	r.reconcile(t)
	r.cycle(t)
	got := r.onBus(t)
	obi := r.sandbox.Assertions(testutil.ClassCert)[0].OpenBadgeID
	if len(got) != 1 || got[0].typ != TypeAwarded || got[0].id != EventID(ledger.AnnounceAwarded, obi) {
		t.Fatalf("bus %+v", got)
	}
}

// A revocation the host made but whose answer was lost (as a crash after the 2xx) is not found
// again by any look-up; the pass that records the row revoked announces it.
func TestLostRevokeAnswerIsAnnouncedByTheNextPass(t *testing.T) {
	r := newRig(t)
	t0 := time.Now().Add(-time.Hour)
	r.event(t, "c-1", edx.TypeCertificateCreated, "downloadable", t0)
	r.reconcile(t)
	r.host.loseRevoke = true
	r.event(t, "r-1", edx.TypeCertificateRevoked, "unavailable", t0.Add(time.Minute))
	r.reconcile(t)
	if as := r.sandbox.Assertions(testutil.ClassCert); len(as) != 1 || !as[0].Revoked {
		t.Fatalf("host %+v", as)
	}
	r.later(time.Minute) // past the retry
	r.reconcile(t)
	r.cycle(t)
	got := r.onBus(t)
	obi := r.sandbox.Assertions(testutil.ClassCert)[0].OpenBadgeID
	if len(got) != 2 || got[0].typ != TypeAwarded || got[1].typ != TypeRevoked || got[1].id != EventID(ledger.AnnounceRevoked, obi) {
		t.Fatalf("bus %+v", got)
	}
}

// The outbox is written with the row, fenced: a job that lost its lease records neither.
func TestOutboxIsFencedWithTheRow(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.event(t, "c-1", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	k := ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 77}
	ann := ledger.Announcement{Kind: ledger.AnnounceAwarded, Row: k, EntityID: "X", OpenBadgeID: "https://x/X", At: time.Now()}
	if err := r.ledger.Step(ctx, k, "not-the-holder", ledger.Fields{"state": ledger.StateIssued}, ann); !errors.Is(err, ledger.ErrLockLost) {
		t.Fatalf("step without the lock: %v", err)
	}
	if r.outboxLen(t) != 0 {
		t.Fatal("an unfenced write reached the outbox")
	}
	tok, ok, err := r.ledger.Lock(ctx, k, time.Minute)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := r.ledger.Step(ctx, k, tok, ledger.Fields{"state": ledger.StateIssued}, ann); err != nil {
		t.Fatal(err)
	}
	entries, err := r.ledger.ReadOutbox(ctx, 10)
	if err != nil || len(entries) != 1 || entries[0].Err != nil || entries[0].Announcement.EntityID != "X" || entries[0].Row != k {
		t.Fatalf("outbox %+v %v", entries, err)
	}
}

// The outbox is capped; what the cap pushes out is counted.
func TestOutboxCapCountsDrops(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the outbox")
	}
	r := newRig(t)
	ctx := context.Background()
	batch := make([]ledger.Announcement, 10_000)
	for i := range batch {
		batch[i] = ledger.Announcement{Kind: ledger.AnnounceRevoked, Row: ledger.RowKey{BadgeClass: "C", UserID: int64(i)}, EntityID: "E", At: time.Now()}
	}
	for written := 0; written < ledger.OutboxCap+5; written += len(batch[:min(len(batch), ledger.OutboxCap+5-written)]) {
		if err := r.ledger.AppendOutbox(ctx, batch[:min(len(batch), ledger.OutboxCap+5-written)]); err != nil {
			t.Fatal(err)
		}
	}
	s, err := r.ledger.OutboxStatus(ctx)
	if err != nil || s.Len != ledger.OutboxCap || s.Dropped != 5 || s.Oldest.IsZero() {
		t.Fatalf("stats %+v %v", s, err)
	}
}
