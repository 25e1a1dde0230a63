package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/app"
)

// ingestLevel is the webhook figure at one concurrency, with its baseline.
type ingestLevel struct {
	Conc   int
	Bridge loadResult
	Raw    loadResult
	CPU    cpuUse // of the bridge part
	// BridgeRSS is the peak RSS of the level's `serve` process (0: not measured).
	BridgeRSS int64
}

// ingestResult is the webhook phase.
type ingestResult struct {
	Levels []ingestLevel
	// BytesPerEvent is the growth of Redis's used_memory per accepted event (a new learner,
	// row, event record and queued job each).
	BytesPerEvent float64
}

// rawQueue is where the baseline enqueues, on database 1 so it never mixes with the bridge's
// keys and can be flushed after each level.
const rawQueue = "bench-raw"

// runIngest measures webhook ingest at each concurrency against raw asynq Enqueue of the same
// bodies on the same Redis. The bridge runs as `serve` (the web role): no worker competes for
// the cores, as the figure is the intake's. Each level has a `serve` process of its own,
// so that its peak RSS (and, with -cpuprofile, its profile) is that level's.
func (b *Bench) runIngest(ctx context.Context) (ingestResult, error) {
	var out ingestResult
	raw := b.redis.client(1)
	defer raw.Close()
	aq := asynq.NewClientFromRedisClient(raw)
	own := b.redis.client(0)
	defer own.Close()

	var grew int64
	var accepted int
	for _, c := range b.cfg.IngestConc {
		n := b.cfg.IngestN
		bodies := make([][]byte, n)
		first := b.nextLearners(n)
		for i := range bodies {
			var err error
			if bodies[i], err = webhookBody(first + int64(i)); err != nil {
				return out, err
			}
		}
		lvl := ingestLevel{Conc: c}

		lvl.Raw = runLoad(ctx, c, n, b.cfg.IngestTime, func(ctx context.Context, i int) error {
			_, err := aq.EnqueueContext(ctx, asynq.NewTask("bench:raw", bodies[i]), asynq.Queue(rawQueue), asynq.MaxRetry(0))
			return err
		})
		if err := raw.FlushDB(ctx).Err(); err != nil {
			return out, fmt.Errorf("flush baseline database: %w", err)
		}

		g, err := b.ingestBridge(ctx, own, &lvl, bodies)
		if err != nil {
			return out, fmt.Errorf("ingest at c = %d: %w", c, err)
		}
		grew += g
		accepted += lvl.Bridge.OK
		out.Levels = append(out.Levels, lvl)
		b.log.Info("ingest", "concurrency", c, "bridge_per_s", int(lvl.Bridge.rate()), "raw_per_s", int(lvl.Raw.rate()),
			"bridge_peak_rss_mib", lvl.BridgeRSS>>20)
	}
	if accepted > 0 {
		out.BytesPerEvent = float64(grew) / float64(accepted)
	}
	return out, nil
}

// ingestBridge posts bodies at lvl.Conc to a `serve` bridge of its own and records the result,
// CPU and the bridge's peak RSS in lvl; it returns the growth of Redis's used_memory.
func (b *Bench) ingestBridge(ctx context.Context, own *redis.Client, lvl *ingestLevel, bodies [][]byte) (int64, error) {
	phase := fmt.Sprintf("ingest-c%d", lvl.Conc)
	br, err := startChildBridge(ctx, bridgeOptions{Command: app.CmdServe, RedisURL: b.redis.url(0), MappingFile: b.mapping,
		RateLimit: b.cfg.Rate, Concurrency: b.cfg.Concurrency}, b.bridgeLog, b.childProfile(phase))
	if err != nil {
		return 0, err
	}
	// Error paths only: the normal path stops it below, where the peak RSS is taken.
	defer func() { _, _ = br.stop() }()
	url := "http://" + br.httpAddr + "/v1/webhooks/openedx"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: lvl.Conc, MaxConnsPerHost: lvl.Conc, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	before, err := usedMemory(ctx, own)
	if err != nil {
		return 0, err
	}
	stopProfile, err := b.profile(phase)
	if err != nil {
		return 0, err
	}
	mark := b.cpuMark(ctx)
	mark.follow(br, false)
	lvl.Bridge = runLoad(ctx, lvl.Conc, len(bodies), b.cfg.IngestTime, func(ctx context.Context, i int) error {
		return postWebhook(ctx, client, url, bodies[i])
	})
	lvl.CPU = mark.since(ctx)
	stopProfile()
	client.CloseIdleConnections()
	after, err := usedMemory(ctx, own)
	if err != nil {
		return 0, err
	}
	if lvl.BridgeRSS, err = br.stop(); err != nil {
		b.log.Warn("stop bridge", "err", err)
	}
	return after - before, nil
}

// postWebhook sends one event with the bearer token and wants 200 "accepted".
func postWebhook(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("webhook answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"accepted"`)) {
		return fmt.Errorf("webhook answered %d: %s", resp.StatusCode, bytes.TrimSpace(answer))
	}
	return nil
}
