package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/badgebridge/bridge/internal/app"
)

// issueResult is one issuance run: N awards made by the workers from a queue filled first.
type issueResult struct {
	Name          string
	N, Awarded    int
	Rate          int // BRIDGE_BADGR_RATE_LIMIT and the host's limit
	Elapsed       time.Duration
	Counts        map[string]int
	Requests      int // every request but the token endpoint's: a login amortises to nothing at steady state
	Late429       int
	CPU           cpuUse
	Err           error
	Families      []family
	BytesPerAward float64 // used_memory growth per awarded learner, queue drained
}

func (r issueResult) awardsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Awarded) / r.Elapsed.Seconds()
}

func (r issueResult) requestsPerAward() float64 {
	if r.Awarded == 0 {
		return 0
	}
	return float64(r.Requests) / float64(r.Awarded)
}

// expected is the issue's bound min(C / L, R / requests per award), in awards per second.
func expected(c int, l time.Duration, r int, perAward float64) float64 {
	bound := math.Inf(1)
	if l > 0 {
		bound = float64(c) / l.Seconds()
	}
	if r > 0 && perAward > 0 {
		bound = math.Min(bound, float64(r)/perAward)
	}
	return bound
}

// serialBound is what C workers can reach when each award makes its host requests one after
// the other: C / (L × requests per award), and never more than the rate limit allows. The
// issue's C / L counts requests, not awards; only batch awards can approach it.
func serialBound(c int, l time.Duration, r int, perAward float64) float64 {
	if perAward <= 0 {
		return expected(c, l, r, perAward)
	}
	return expected(c, time.Duration(float64(l)*perAward), r, perAward)
}

// runIssuance fills the queue with n owed awards through the webhook (a `serve` bridge), then
// starts a `work` bridge and times it from ready to the last award, against a host with the
// configured latency that throttles above rate requests per second.
func (b *Bench) runIssuance(ctx context.Context, name string, n, rate int) (issueResult, error) {
	out := issueResult{Name: name, N: n, Rate: rate}
	own := b.redis.client(0)
	defer own.Close()
	if err := own.FlushAll(ctx).Err(); err != nil {
		return out, fmt.Errorf("flush: %w", err)
	}
	before, err := usedMemory(ctx, own)
	if err != nil {
		return out, err
	}
	if err := b.fill(ctx, n, rate); err != nil {
		return out, err
	}

	host, err := startFakeHost(hostOptions{Class: benchClass, Latency: b.cfg.Latency, Rate: float64(rate)})
	if err != nil {
		return out, err
	}
	defer host.close()
	stopProfile, err := b.profile(name)
	if err != nil {
		return out, err
	}
	mark := b.cpuMark(ctx)
	host.resetCounts()
	br, err := startBridge(ctx, bridgeOptions{Command: app.CmdWork, RedisURL: b.redis.url(0), MappingFile: b.mapping,
		Host: host, RateLimit: rate, Concurrency: b.cfg.Concurrency}, b.bridgeLog)
	if err != nil {
		stopProfile()
		return out, err
	}
	wctx, cancel := context.WithTimeoutCause(ctx, b.cfg.IssueTime, errTimeout)
	out.Awarded, out.Err = host.waitAwards(wctx, n)
	cancel()
	out.Elapsed = host.lastAwardAt().Sub(br.ready)
	if out.Err != nil {
		out.Elapsed = time.Since(br.ready)
	}
	out.CPU = mark.since(ctx)
	stopProfile()
	out.Counts, out.Late429 = host.snapshot(time.Second)
	for k, v := range out.Counts {
		if k != kindToken {
			out.Requests += v
		}
	}
	// Let the jobs that made the last awards finish their bookkeeping before measuring memory.
	time.Sleep(500 * time.Millisecond)
	if err := br.stop(); err != nil {
		b.log.Warn("stop bridge", "err", err)
	}
	after, err := usedMemory(ctx, own)
	if err != nil {
		return out, err
	}
	if out.Awarded > 0 {
		out.BytesPerAward = float64(after-before) / float64(out.Awarded)
	}
	if out.Families, err = keyFamilies(ctx, own); err != nil {
		return out, err
	}
	b.log.Info("issuance", "name", name, "awarded", out.Awarded, "elapsed", out.Elapsed.String(), "requests", out.Requests)
	return out, nil
}

// fill queues n awards for new learners through a `serve` bridge's webhook.
func (b *Bench) fill(ctx context.Context, n, rate int) error {
	br, err := startBridge(ctx, bridgeOptions{Command: app.CmdServe, RedisURL: b.redis.url(0), MappingFile: b.mapping,
		RateLimit: rate, Concurrency: b.cfg.Concurrency}, b.bridgeLog)
	if err != nil {
		return err
	}
	defer func() {
		if err := br.stop(); err != nil {
			b.log.Warn("stop bridge", "err", err)
		}
	}()
	url := "http://" + br.app.HTTPAddr + "/v1/webhooks/openedx"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, MaxConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	first := b.nextLearners(n)
	res := runLoad(ctx, 16, n, b.cfg.IssueTime, func(ctx context.Context, i int) error {
		body, err := webhookBody(first + int64(i))
		if err != nil {
			return err
		}
		return postWebhook(ctx, client, url, body)
	})
	if res.OK != n {
		return fmt.Errorf("queue %d awards: %d accepted: %w", n, res.OK, res.FirstErr)
	}
	return nil
}

// e2eResult is the latency from sending a signal to the host's 201, one event at a time.
type e2eResult struct {
	Latencies []time.Duration // sorted
	Missed    int
	Requests  int // host requests but the token endpoint's, for len(Latencies) awards
	Err       error
}

// runEndToEnd sends one certificate event at a time to a `run` bridge whose host answers at
// once (host latency excluded) and times each until the host has answered its award 201.
func (b *Bench) runEndToEnd(ctx context.Context) (e2eResult, error) {
	var out e2eResult
	own := b.redis.client(0)
	defer own.Close()
	if err := own.FlushAll(ctx).Err(); err != nil {
		return out, fmt.Errorf("flush: %w", err)
	}
	host, err := startFakeHost(hostOptions{Class: benchClass, Rate: float64(b.cfg.Rate)})
	if err != nil {
		return out, err
	}
	defer host.close()
	br, err := startBridge(ctx, bridgeOptions{Command: app.CmdRun, RedisURL: b.redis.url(0), MappingFile: b.mapping,
		Host: host, RateLimit: b.cfg.Rate, Concurrency: b.cfg.Concurrency}, b.bridgeLog)
	if err != nil {
		return out, err
	}
	defer func() {
		if err := br.stop(); err != nil {
			b.log.Warn("stop bridge", "err", err)
		}
	}()
	stopProfile, err := b.profile("e2e")
	if err != nil {
		return out, err
	}
	defer stopProfile()
	url := "http://" + br.app.HTTPAddr + "/v1/webhooks/openedx"
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	first := b.nextLearners(b.cfg.E2EN)
	for i := range b.cfg.E2EN {
		if ctx.Err() != nil {
			return out, context.Cause(ctx)
		}
		uid := first + int64(i)
		body, err := webhookBody(uid)
		if err != nil {
			return out, err
		}
		done := host.watchAward(learnerEmail(uid))
		sent := time.Now()
		if err := postWebhook(ctx, client, url, body); err != nil {
			out.Missed++
			out.Err = err
			continue
		}
		select {
		case at := <-done:
			out.Latencies = append(out.Latencies, at.Sub(sent))
		case <-time.After(10 * time.Second):
			out.Missed++
			out.Err = fmt.Errorf("learner %d: no award within 10s", uid)
		case <-ctx.Done():
			return out, context.Cause(ctx)
		}
		// Idle: the next signal comes only after the rate limiter has room again.
		time.Sleep(b.cfg.E2EGap)
	}
	sort.Slice(out.Latencies, func(i, j int) bool { return out.Latencies[i] < out.Latencies[j] })
	counts, _ := host.snapshot(time.Second)
	for k, v := range counts {
		if k != kindToken {
			out.Requests += v
		}
	}
	return out, nil
}
