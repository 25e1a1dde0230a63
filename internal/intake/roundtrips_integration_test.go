package intake

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/testutil"
)

// roundTrips counts what the client sends to Redis: a command or a whole pipeline (MULTI/EXEC
// included) is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// Item 3 of issue 10: at steady state (connections open, scripts cached, asynq's queue known),
// an accepted certificate of a new learner costs 4 round trips: the watched reads with the
// event's de-duplication, the transaction with the event record, the job slot and the enqueue.
// A duplicate costs 1.
func TestIntakeRoundTrips(t *testing.T) {
	in, rdb := newBoundsIntake(t)
	count := &roundTrips{}
	rdb.AddHook(count)
	ctx := context.Background()
	warm := testutil.CertEvent("rt-0", 500, "warm@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	if _, err := in.Handle(ctx, warm, "webhook"); err != nil {
		t.Fatal(err)
	}
	ev := testutil.CertEvent("rt-1", 501, "rt@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
	count.n.Store(0)
	if res, err := in.Handle(ctx, ev, "webhook"); err != nil || res.Status != StatusAccepted {
		t.Fatalf("intake: %+v %v", res, err)
	}
	if n := count.n.Load(); n > 4 {
		t.Errorf("accepted event: %d round trips, want at most 4", n)
	}
	count.n.Store(0)
	if res, _ := in.Handle(ctx, ev, "webhook"); res.Status != StatusDuplicate {
		t.Fatalf("again: %+v, want duplicate", res)
	}
	if n := count.n.Load(); n > 1 {
		t.Errorf("duplicate: %d round trips, want 1", n)
	}
}

// The de-duplication is read inside the ledger's transaction, so a delivery that lost the race
// re-reads it: of many concurrent deliveries of one event exactly one applies it and the others
// are answered duplicate (a look-up before the transaction let them through as "unchanged").
func TestConcurrentDeliveriesApplyOnce(t *testing.T) {
	in, _ := newBoundsIntake(t)
	ctx := context.Background()
	for round := range 5 {
		ev := testutil.CertEvent(fmt.Sprintf("race-%d", round), int64(600+round), "race@example.org", edx.TypeCertificateCreated, "downloadable", time.Now().Add(-time.Hour))
		var wg sync.WaitGroup
		var accepted, dup atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := in.Handle(ctx, ev, "webhook")
				switch {
				case err != nil:
					t.Error(err)
				case res.Status == StatusAccepted:
					accepted.Add(1)
				case res.Status == StatusDuplicate:
					dup.Add(1)
				}
			}()
		}
		wg.Wait()
		if accepted.Load() != 1 || dup.Load() != 7 {
			t.Fatalf("round %d: %d accepted, %d duplicates; want 1 and 7", round, accepted.Load(), dup.Load())
		}
	}
}
