package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/durable"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

// countingWaiter counts the waits that confirmed.
type countingWaiter struct {
	gate *durable.Gate
	ok   atomic.Int64
}

func (w *countingWaiter) Wait(ctx context.Context) error {
	err := w.gate.Wait(ctx)
	if err == nil {
		w.ok.Add(1)
	}
	return err
}

// BRIDGE_REDIS_MIN_REPLICAS=1 against a real primary and replica (issue 11, item 2): an event is
// answered once the replica holds it; with the replica gone the answer is an error within about
// the wait timeout (a 503, an entry left pending), for the resend too (the first write may be
// the one unreplicated); once the replica is back, the resend is a duplicate, answered only
// after a wait that confirmed.
func TestMinReplicasHoldsTheAnswer(t *testing.T) {
	primary := testutil.StartRedis(t, "--repl-diskless-sync-delay", "0") // a replica in sync at once
	replica := testutil.StartReplica(t, primary)
	rdb := primary.Client(t)
	m, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{EventRetention: time.Hour})
	const timeout = 300 * time.Millisecond
	gate := durable.New(rdb, durable.Options{MinReplicas: 1, Timeout: timeout, Prefix: "bb:"})
	if err := gate.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	waiter := &countingWaiter{gate: gate}
	in := &Intake{Ledger: l, Mapping: m, Log: slog.New(slog.DiscardHandler), Durable: waiter,
		Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute)}
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)

	first := testutil.CertEvent("dur-1", 801, "first@example.org", edx.TypeCertificateCreated, "downloadable", at)
	if res, err := in.Handle(ctx, first, "webhook"); err != nil || res.Status != StatusAccepted {
		t.Fatalf("with the replica up: %+v %v", res, err)
	}
	// Answered after the replica acknowledged: it holds the event record already.
	if n, err := replica.Client(t).Exists(ctx, "bb:evt:dur-1").Result(); err != nil || n != 1 {
		t.Fatalf("the replica lacks the accepted event's record: %d %v", n, err)
	}

	replica.Stop()
	second := testutil.CertEvent("dur-2", 802, "second@example.org", edx.TypeCertificateCreated, "downloadable", at)
	for i, want := range []string{"the write", "the resend"} {
		began := time.Now()
		res, err := in.Handle(ctx, second, "webhook")
		if !errors.Is(err, durable.ErrNotConfirmed) {
			t.Fatalf("%s with the replica down: %+v %v, want ErrNotConfirmed", want, res, err)
		}
		if d := time.Since(began); d < timeout || d > timeout+2*time.Second {
			t.Errorf("%s failed after %v, want about %v", want, d, timeout)
		}
		if i == 0 && !strings.Contains(err.Error(), "0 of 1 replicas") {
			t.Errorf("error %q does not say how many replicas acknowledged", err)
		}
	}
	// The write itself reached the primary: the resend above found it (duplicate) and still
	// did not answer.
	if n, _ := rdb.Exists(ctx, "bb:evt:dur-2").Result(); n != 1 {
		t.Fatal("the unconfirmed event's record is not on the primary")
	}

	replica.Restart(t)
	testutil.WaitReplicas(t, rdb, 1)
	before := waiter.ok.Load()
	res, err := in.Handle(ctx, second, "webhook")
	if err != nil || res.Status != StatusDuplicate {
		t.Fatalf("the resend with the replica back: %+v %v, want duplicate", res, err)
	}
	if waiter.ok.Load() != before+1 {
		t.Fatal("the duplicate was answered without a confirmed wait")
	}
	if n, _ := replica.Client(t).Exists(ctx, "bb:evt:dur-2").Result(); n != 1 {
		t.Fatal("the replica lacks the event answered as duplicate")
	}
}

// Every outcome that rests on Redis waits; an event that touched nothing does not. A failed
// wait turns each of them into an error.
func TestEveryRecordedOutcomeWaits(t *testing.T) {
	in, _ := newBoundsIntake(t)
	w := &failingWaiter{}
	in.Durable = w
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	unmapped, _ := edx.ParseCourseKey("course-v1:Other+Course+Run")
	cert := func(id string, uid int64, when time.Time) edx.Event {
		return testutil.CertEvent(id, uid, "w@example.org", edx.TypeCertificateCreated, "downloadable", when)
	}
	unmappedEv := func(id string, uid int64) edx.Event {
		ev := cert(id, uid, at)
		ev.Course = unmapped
		return ev
	}
	conflict := testutil.CertEvent("w-1", 901, "w@example.org", edx.TypeCertificateRevoked, "unavailable", at)
	for _, tc := range []struct {
		name  string
		ev    edx.Event
		want  string
		waits bool
	}{
		{"accepted", cert("w-1", 901, at), StatusAccepted, true},
		{"duplicate", cert("w-1", 901, at), StatusDuplicate, true},
		{"unchanged", cert("w-2", 901, at), StatusUnchanged, true},
		{"ignored, recorded", unmappedEv("w-3", 902), StatusIgnored, true},
		{"ignored, duplicate", unmappedEv("w-3", 902), StatusDuplicate, true},
		{"conflict", conflict, StatusConflict, true},
		{"ignored, no id: nothing written", unmappedEv("", 902), StatusIgnored, false},
	} {
		w.fail, w.calls = false, 0
		res, err := in.Handle(ctx, tc.ev, "webhook")
		if err != nil || res.Status != tc.want {
			t.Fatalf("%s: %+v %v, want %s", tc.name, res, err, tc.want)
		}
		if got := w.calls == 1; got != tc.waits || w.calls > 1 {
			t.Errorf("%s: %d waits, want waits=%v", tc.name, w.calls, tc.waits)
		}
	}

	// The same paths with a wait that fails: an error, whatever the outcome would have been.
	w.fail = true
	for _, tc := range []struct {
		name string
		ev   edx.Event
	}{
		{"would be accepted", cert("f-1", 903, at)},
		{"would be unchanged", cert("f-2", 901, at)},
		{"would be ignored, recorded", unmappedEv("f-3", 904)},
		{"would be a duplicate", cert("w-1", 901, at)},
		{"would be a conflict", conflict},
	} {
		if res, err := in.Handle(ctx, tc.ev, "webhook"); !errors.Is(err, durable.ErrNotConfirmed) {
			t.Errorf("%s, failing wait: %+v %v, want ErrNotConfirmed", tc.name, res, err)
		}
	}
	if res, err := in.Handle(ctx, unmappedEv("", 904), "webhook"); err != nil || res.Status != StatusIgnored {
		t.Errorf("nothing written, failing wait: %+v %v, want ignored", res, err)
	}
}

type failingWaiter struct {
	fail  bool
	calls int
}

func (w *failingWaiter) Wait(context.Context) error {
	w.calls++
	if w.fail {
		return fmt.Errorf("%w: 0 of 1 replicas", durable.ErrNotConfirmed)
	}
	return nil
}
