package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/app"
)

// busResult is the event-bus phase: the time to acknowledge N entries, bridge and baseline.
type busResult struct {
	N             int
	Bridge, Raw   time.Duration
	BridgeN, RawN int // entries acknowledged within the time budget
	BridgeCPU     cpuUse
	BridgeErr     error
}

const (
	rawStream = "bench-raw-stream"
	rawGroup  = "bench-raw"
	// busCount is the entries per XREADGROUP of the baseline: the bridge's default COUNT, so
	// both read the same batches.
	busCount = 32
)

// runEventBus writes N entries in the event-bus wire format, then times how long the bridge's
// consumer takes to acknowledge them all, against a plain Go loop of XREADGROUP, one asynq
// Enqueue per entry and one XACK per batch on the same Redis.
func (b *Bench) runEventBus(ctx context.Context) (busResult, error) {
	n := b.cfg.BusN
	out := busResult{N: n}

	raw := b.redis.client(1)
	defer raw.Close()
	err := produce(ctx, raw, rawStream, b.nextLearners(n), n)
	if err != nil {
		return out, err
	}
	if out.Raw, out.RawN, err = rawConsume(ctx, raw, n, b.cfg.BusTime); err != nil {
		return out, err
	}
	if err := raw.FlushDB(ctx).Err(); err != nil {
		return out, fmt.Errorf("flush baseline database: %w", err)
	}

	own := b.redis.client(0)
	defer own.Close()
	if err := produce(ctx, own, certStream, b.nextLearners(n), n); err != nil {
		return out, err
	}
	host, err := startFakeHost(hostOptions{Class: benchClass, Latency: b.cfg.Latency, Rate: float64(b.cfg.Rate)})
	if err != nil {
		return out, err
	}
	defer host.close()
	stopProfile, err := b.profile("eventbus")
	if err != nil {
		return out, err
	}
	mark := b.cpuMark(ctx)
	br, err := startBridge(ctx, bridgeOptions{Command: app.CmdWork, RedisURL: b.redis.url(0), MappingFile: b.mapping,
		Host: host, RateLimit: b.cfg.Rate, Concurrency: b.cfg.Concurrency, EventBus: true}, b.bridgeLog)
	if err != nil {
		stopProfile()
		return out, err
	}
	out.BridgeN, out.BridgeErr = waitAcked(ctx, own, certStream, "badge-bridge", n, b.cfg.BusTime)
	out.Bridge = time.Since(br.ready)
	out.BridgeCPU = mark.since(ctx)
	stopProfile()
	if err := br.stop(); err != nil {
		b.log.Warn("stop bridge", "err", err)
	}
	b.log.Info("eventbus", "bridge", out.Bridge.String(), "raw", out.Raw.String())
	return out, nil
}

// rawConsume is the baseline consumer: read a batch, enqueue each entry, acknowledge the batch.
// Read and enqueue failures are retried until the time budget ends, as a consumer would.
func rawConsume(ctx context.Context, c *redis.Client, n int, budget time.Duration) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, budget, errTimeout)
	defer cancel()
	if err := c.XGroupCreate(ctx, rawStream, rawGroup, "0").Err(); err != nil {
		return 0, 0, fmt.Errorf("baseline XGROUP CREATE: %w", err)
	}
	aq := asynq.NewClientFromRedisClient(c)
	start := time.Now()
	acked := 0
	for acked < n && ctx.Err() == nil {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: rawGroup, Consumer: "bench", Streams: []string{rawStream, ">"},
			Count: busCount, Block: 100 * time.Millisecond}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			continue
		}
		for _, s := range res {
			ids := make([]string, 0, len(s.Messages))
			for _, m := range s.Messages {
				data, _ := m.Values["event_data"].(string)
				if _, err := aq.EnqueueContext(ctx, asynq.NewTask("bench:raw", []byte(data)), asynq.Queue(rawQueue), asynq.MaxRetry(0)); err != nil {
					continue
				}
				ids = append(ids, m.ID)
			}
			if len(ids) > 0 && c.XAck(ctx, rawStream, rawGroup, ids...).Err() == nil {
				acked += len(ids)
			}
		}
	}
	if acked < n {
		return time.Since(start), acked, fmt.Errorf("baseline acknowledged %d of %d entries: %w", acked, n, context.Cause(ctx))
	}
	return time.Since(start), acked, nil
}

// waitAcked polls the group until it has read all n entries and none is pending.
func waitAcked(ctx context.Context, c *redis.Client, stream, group string, n int, budget time.Duration) (int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, budget, errTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	acked := 0
	for {
		groups, err := c.XInfoGroups(ctx, stream).Result()
		if err == nil {
			for _, g := range groups {
				if g.Name == group {
					acked = int(g.EntriesRead - g.Pending)
					if g.EntriesRead >= int64(n) && g.Pending == 0 {
						return n, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return acked, fmt.Errorf("%d of %d entries acknowledged: %w", acked, n, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
