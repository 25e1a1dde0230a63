package eventbus

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// xackCounter counts XACK commands and the round trips that carry them.
type xackCounter struct{ commands, trips atomic.Int64 }

func (h *xackCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *xackCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xack" {
			h.commands.Add(1)
			h.trips.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *xackCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		acks := 0
		for _, c := range cmds {
			if c.Name() == "xack" {
				acks++
			}
		}
		if acks > 0 {
			h.commands.Add(int64(acks))
			h.trips.Add(1)
		}
		return next(ctx, cmds)
	}
}

// The entries of one read are acknowledged together: one XACK per stream and batch, not one
// per entry.
func TestBatchAcknowledgedInOneRoundTrip(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	counter := &xackCounter{}
	bus.AddHook(counter)
	h := newFakeHandler()
	cfg := testConfig("web-1", certStream)
	cfg.Start = StartOldest
	var entries []entry
	for i := 1; i <= 16; i++ {
		entries = append(entries, certEntry(t, eventID(i)))
	}
	produce(t, bus, certStream, entries...)
	start(t, bus, own, h, cfg) // Count 8: two batches
	eventually(t, "all recorded", func() bool { return h.recorded() == 16 })
	eventually(t, "all acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if trips := counter.trips.Load(); trips > 4 {
		t.Fatalf("16 entries acknowledged in %d round trips, want one per batch", trips)
	}
}
