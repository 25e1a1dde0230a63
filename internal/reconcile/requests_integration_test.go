package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

// leaseThief takes the row's lock away while the award POST is in flight, as an expired lease
// would let another job do.
type leaseThief struct {
	*guardHost
	steal func()
}

func (h leaseThief) Award(ctx context.Context, class string, req badgehost.AwardRequest) (badgehost.Assertion, error) {
	h.steal()
	return h.guardHost.Award(ctx, class, req)
}

// owedRow records a certificate event for learner uid through the real intake on a fresh
// redis-server, so that the learner's row owes a reconcile.
type owedRow struct {
	rdb *redis.Client
	l   *ledger.Ledger
	enq *queue.Enqueuer
	k   ledger.RowKey
}

func newOwedRow(t *testing.T, uid int64, at time.Time) owedRow {
	t.Helper()
	rdb, l, enq, in := newIntake(t, false)
	ev := testutil.CertEvent(fmt.Sprintf("owed-%d", uid), uid, fmt.Sprintf("learner%d@example.org", uid), edx.TypeCertificateCreated, "downloadable", at)
	if res, err := in.Handle(context.Background(), ev, "test"); err != nil || res.Status != intake.StatusAccepted {
		t.Fatalf("intake: %+v %v", res, err)
	}
	return owedRow{rdb: rdb, l: l, enq: enq, k: ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: uid}}
}

// newIntake is the real intake of the test mapping on a fresh redis-server; with bulk its rows go
// to bulk runs, as backfill's do.
func newIntake(t *testing.T, bulk bool) (*redis.Client, *ledger.Ledger, *queue.Enqueuer, *intake.Intake) {
	t.Helper()
	rdb := testutil.StartRedis(t).Client(t)
	m, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{})
	enq := queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute)
	in := &intake.Intake{Ledger: l, Mapping: m, Enqueuer: enq}
	if bulk {
		in.Enqueuer = queue.NewBulkEnqueuer(enq)
	}
	return rdb, l, enq, in
}

// A clean 201 within the lease costs two host requests (look-up, POST) and no verification; a
// POST during which the lease ran out is looked up again and verified after BRIDGE_SETTLE.
func TestHostRequestsPerAward(t *testing.T) {
	for _, lost := range []bool{false, true} {
		ctx := context.Background()
		o := newOwedRow(t, 78, time.Now().Add(-time.Hour))
		rdb, l, enq, k := o.rdb, o.l, o.enq, o.k
		g := &guardHost{}
		var host badgehost.Host = g
		if lost {
			host = leaseThief{guardHost: g, steal: func() { rdb.Set(ctx, "bb:lock:"+k.String(), "another job", time.Minute) }}
		}
		rec := &Reconciler{Ledger: l, Host: host, Scheduler: enq, Log: slog.New(slog.DiscardHandler), Settle: time.Minute, Lease: time.Minute, MaxRetry: 3}
		if err := rec.Reconcile(ctx, k); err != nil {
			t.Fatal(err)
		}
		calls := g.take()
		r, _ := l.Read(ctx, k)
		if !lost {
			if !slices.Equal(calls, []string{"list", "award"}) || r.State != ledger.StateIssued || !r.NextCheck.IsZero() {
				t.Fatalf("clean award: calls %v, state %s, next check %v; want [list award], issued, none", calls, r.State, r.NextCheck)
			}
			continue
		}
		if !slices.Equal(calls, []string{"list", "award", "list"}) {
			t.Fatalf("award with a lost lease: calls %v, want a look-up after the POST", calls)
		}
	}
}

// Without a badge stream configured, nothing is written to the announcement outbox.
func TestNoOutboxWithoutAnnouncements(t *testing.T) {
	ctx := context.Background()
	o := newOwedRow(t, 79, time.Now().Add(-time.Hour))
	rdb, l, enq, k := o.rdb, o.l, o.enq, o.k
	rec := &Reconciler{Ledger: l, Host: &guardHost{}, Scheduler: enq, Log: slog.New(slog.DiscardHandler), Settle: time.Minute, Lease: time.Minute, MaxRetry: 3}
	if err := rec.Reconcile(ctx, k); err != nil {
		t.Fatal(err)
	}
	if r, _ := l.Read(ctx, k); r == nil || r.State != ledger.StateIssued {
		t.Fatalf("row %+v, want issued", r)
	}
	if keys := rdb.Keys(ctx, "bb:announce:*").Val(); len(keys) != 0 {
		t.Fatalf("outbox written with announcements off: %v", keys)
	}
}
