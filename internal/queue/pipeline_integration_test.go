package queue

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/reconcile"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

type pipeline struct {
	rdb     *redis.Client
	sandbox *sandbox.Host
	ledger  *ledger.Ledger
	intake  *intake.Intake
	worker  *Worker
	settle  time.Duration
}

func newPipeline(t *testing.T) *pipeline {
	return newPipelineWith(t, testutil.TestMapping, testutil.ClassCert)
}

// newPipelineWith runs the pipeline on a mapping whose badge classes the sandbox host knows.
func newPipelineWith(t *testing.T, mapping string, classes ...string) *pipeline {
	t.Helper()
	srv := testutil.StartRedis(t)
	rdb := srv.Client(t)
	log := slog.New(slog.DiscardHandler)
	sb := sandbox.New(sandbox.Options{Username: "svc", Password: "pw-0123456789", BadgeClasses: classes})
	hs := httptest.NewServer(sb)
	t.Cleanup(hs.Close)
	sb.SetBaseURL(hs.URL)
	host := badgr.New(badgr.Config{BaseURL: hs.URL, Username: "svc", Password: "pw-0123456789", Timeout: 400 * time.Millisecond}, rdb, log)
	m, err := rules.Parse([]byte(mapping))
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{IntakeGrace: 3 * time.Second})
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, 20*time.Second)
	p := &pipeline{rdb: rdb, sandbox: sb, ledger: l, settle: time.Second}
	p.intake = &intake.Intake{Ledger: l, Mapping: m, Enqueuer: enq, Log: log}
	rec := &reconcile.Reconciler{Ledger: l, Host: host, Scheduler: enq, Log: log, Settle: p.settle, Lease: 5 * time.Second, MaxRetry: 12}
	sw := &Sweeper{Ledger: l, Enqueuer: enq, Log: log, Interval: 100 * time.Millisecond, Requeue: 6 * time.Second}
	p.worker = NewWorker(rdb, WorkerConfig{Concurrency: 8, ShutdownGrace: 2 * time.Second}, rec, sw, log)
	if err := p.worker.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.worker.Shutdown)
	return p
}

// unrevoked counts the host's unrevoked assertions per recipient.
func (p *pipeline) unrevoked() map[string]int {
	out := map[string]int{}
	for _, a := range p.sandbox.Assertions(testutil.ClassCert) {
		if !a.Revoked {
			out[a.Recipient]++
		}
	}
	return out
}

func TestPipelineConvergesUnderDuplicatesReorderingAndFaults(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	const n = 40
	t0 := time.Date(2024, 5, 27, 12, 0, 0, 123456000, time.UTC)
	t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	email := func(i int) string { return fmt.Sprintf("Learner%d@Example.org", i) }
	want := map[string]int{}
	var events []edx.Event
	for i := 1; i <= n; i++ {
		uid := int64(1000 + i)
		created := testutil.CertEvent(fmt.Sprintf("c-%d", i), uid, email(i), edx.TypeCertificateCreated, "downloadable", t0)
		events = append(events, created, created, created)
		// The same save sends changed too, under its own id.
		events = append(events, testutil.CertEvent(fmt.Sprintf("ch-%d", i), uid, email(i), edx.TypeCertificateChanged, "downloadable", t0))
		held := true
		switch i % 3 {
		case 0: // revoked later, and for some re-awarded later still
			events = append(events, testutil.CertEvent(fmt.Sprintf("r-%d", i), uid, email(i), edx.TypeCertificateRevoked, "unavailable", t1))
			held = false
			if i%5 == 0 {
				events = append(events, testutil.CertEvent(fmt.Sprintf("re-%d", i), uid, email(i), edx.TypeCertificateCreated, "downloadable", t2))
				held = true
			}
		case 1: // revoked with the award's own timestamp: the revocation wins
			rv := testutil.CertEvent(fmt.Sprintf("r-%d", i), uid, email(i), edx.TypeCertificateRevoked, "notpassing", t0)
			events = append(events, rv, rv)
			held = false
		}
		if held {
			want[strings.ToLower(email(i))] = 1
		}
	}
	rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })

	// Faults while the events arrive: 500s, awards that time out after the host created them,
	// and every access token expiring mid-run.
	p.sandbox.FailNext(10, 500)
	p.sandbox.SetAwardDelay(600 * time.Millisecond)
	var wg sync.WaitGroup
	work := make(chan edx.Event)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range work {
				if _, err := p.intake.Handle(ctx, ev, "test"); err != nil {
					t.Errorf("intake %s: %v", ev.ID, err)
				}
			}
		}()
	}
	for i, ev := range events {
		if i == len(events)/2 {
			p.sandbox.ExpireTokens()
		}
		work <- ev
	}
	close(work)
	wg.Wait()
	time.Sleep(time.Second)
	p.sandbox.SetAwardDelay(0)

	// Converged: the host holds exactly what the model says, and stays so past a settle period.
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := p.unrevoked()
		if equalCounts(got, want) && p.allSettled(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged: host %v\nwant %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(p.settle + time.Second)
	if got := p.unrevoked(); !equalCounts(got, want) {
		t.Fatalf("drifted after convergence: host %v, want %v", got, want)
	}
	for i := 1; i <= n; i++ {
		r, err := p.ledger.Read(ctx, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: int64(1000 + i)})
		if err != nil || r == nil {
			t.Fatalf("row of learner %d: %v", i, err)
		}
		held := want[strings.ToLower(email(i))] == 1
		if held && r.State != ledger.StateIssued || !held && r.State != ledger.StateRevoked && r.State != ledger.StateNone {
			t.Errorf("learner %d: state %s (reason %q), want held=%v", i, r.State, r.Reason, held)
		}
	}
}

// allSettled: no row is owed a reconcile before a minute from now (verifications included).
func (p *pipeline) allSettled(t *testing.T) bool {
	total, _, err := p.ledger.Owed(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return total == 0
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAwardTimeoutAfterHostCreatedIsNotRepeated(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	p.sandbox.SetAwardDelay(time.Second) // past the client's 400 ms timeout; the assertion exists
	ev := testutil.CertEvent("once", 7, "seven@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Minute))
	if res, err := p.intake.Handle(ctx, ev, "test"); err != nil || res.Status != intake.StatusAccepted {
		t.Fatalf("intake: %+v %v", res, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, _ := p.ledger.Read(ctx, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 7})
		if r != nil && r.State == ledger.StateIssued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("row never issued: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := p.unrevoked()["seven@example.org"]; got != 1 {
		t.Fatalf("%d unrevoked assertions, want 1", got)
	}
	if posts := p.sandbox.Requests()["POST /v2/badgeclasses/{id}/assertions"]; posts != 1 {
		t.Fatalf("%d award POSTs, want 1: the look-up after settling must find the first", posts)
	}
}

func TestDuplicatesOnHostAreRevokedKeepingTheOldest(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	// Two assertions already exist (a legacy integration, or a race): the oldest is kept.
	first := plant(t, p, "dup@example.org")
	plant(t, p, "dup@example.org")
	ev := testutil.CertEvent("dup", 8, "dup@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Minute))
	if _, err := p.intake.Handle(ctx, ev, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for p.unrevoked()["dup@example.org"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("duplicates not revoked: %v", p.unrevoked())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	r, _ := p.ledger.Read(ctx, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 8})
	if r.EntityID != first {
		t.Fatalf("kept %s, want the oldest %s", r.EntityID, first)
	}
}

func TestUnknownBadgeClassIsParkedWithTheHostsReason(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	p.intake.Mapping, _ = rules.Parse([]byte(strings.ReplaceAll(testutil.TestMapping, testutil.ClassCert, "NoSuchClass")))
	ev := testutil.CertEvent("gone", 9, "nine@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Minute))
	if _, err := p.intake.Handle(ctx, ev, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := p.ledger.Read(ctx, ledger.RowKey{BadgeClass: "NoSuchClass", UserID: 9})
		if r != nil && r.State == ledger.StateFailed {
			if !strings.Contains(r.Reason, "not found") || r.Retries != 0 {
				t.Fatalf("reason %q retries %d: want the host's 404 message, parked at once", r.Reason, r.Retries)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("row not parked: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitIssued waits until the learner's row is issued.
func (p *pipeline) waitIssued(t *testing.T, uid int64) *ledger.Row {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, _ := p.ledger.Read(context.Background(), ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: uid})
		if r != nil && r.State == ledger.StateIssued {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("row of user %d never issued: %+v", uid, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Redis losing everything (a restart without persistence) must not produce a second badge:
// the look-up before every award finds the assertion the host already has.
func TestRedisDataLossDoesNotDuplicate(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	ev := testutil.CertEvent("loss-1", 11, "eleven@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	if _, err := p.intake.Handle(ctx, ev, "test"); err != nil {
		t.Fatal(err)
	}
	first := p.waitIssued(t, 11)
	if err := p.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The sender resends (or the bus replays) the same certificate: the ledger is empty now.
	if res, err := p.intake.Handle(ctx, ev, "test"); err != nil || res.Status != intake.StatusAccepted {
		t.Fatalf("resend after data loss: %+v %v", res, err)
	}
	again := p.waitIssued(t, 11)
	if again.EntityID != first.EntityID {
		t.Fatalf("after data loss the row points at %s, want the existing %s", again.EntityID, first.EntityID)
	}
	if posts := p.sandbox.Requests()["POST /v2/badgeclasses/{id}/assertions"]; posts != 1 {
		t.Fatalf("%d award POSTs, want 1", posts)
	}
	if n := p.unrevoked()["eleven@example.org"]; n != 1 {
		t.Fatalf("%d unrevoked assertions, want 1", n)
	}
}

// A learner's e-mail change neither awards again nor blocks revocation.
func TestEmailChangeNeitherReawardsNorBlocksRevocation(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	if _, err := p.intake.Handle(ctx, testutil.CertEvent("m-1", 12, "old@example.org", edx.TypeCertificateCreated, "downloadable", t0), "test"); err != nil {
		t.Fatal(err)
	}
	p.waitIssued(t, 12)
	// A later save of the certificate carries the new address.
	if _, err := p.intake.Handle(ctx, testutil.CertEvent("m-2", 12, "New@Example.org", edx.TypeCertificateChanged, "downloadable", t0.Add(time.Minute)), "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(p.settle + 500*time.Millisecond)
	if got := p.unrevoked(); len(got) != 1 || got["old@example.org"] != 1 {
		t.Fatalf("after the e-mail change the host holds %v, want only the original award", got)
	}
	if _, err := p.intake.Handle(ctx, testutil.CertEvent("m-3", 12, "new@example.org", edx.TypeCertificateRevoked, "unavailable", t0.Add(2*time.Minute)), "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(p.unrevoked()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("revocation did not reach the award made to the old address: %v", p.unrevoked())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
