package bench

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/badgebridge/bridge/internal/app"
	"github.com/badgebridge/bridge/internal/backfill"
)

// backfillIssuedOn is every row's issue date, in the format of the LMS's certificate export
// (Python's str(datetime)), which is what an operator hands to `bridge backfill`. It lies in the
// past, as the backfill refuses future dates.
const backfillIssuedOn = "2024-05-27 12:25:45.678901+00:00"

// backfillResult is the backfill phase: `bridge backfill --yes` of N learners into a running
// `work` bridge, whose bulk runs award them in batches against a host at rate R.
type backfillResult struct {
	N, Awarded int
	Rate       int
	Latency    time.Duration
	Summary    backfill.Summary
	// Intake is the Backfill call; Total runs from its start until the host answered the
	// request that made the N-th assertion. FirstAward is from the same start to the first
	// award answered, AwardSpan from the first to the last.
	Intake, Total         time.Duration
	FirstAward, AwardSpan time.Duration
	Counts                map[string]int
	Requests              int // every request but the token endpoint's, 429s included
	Throttled, Late429    int
	CPU                   cpuUse
	// BridgeRSS is the peak RSS of the `work` process that made the awards (0: not measured).
	BridgeRSS int64
	Err       error
}

func (r backfillResult) requestsPerAward() float64 {
	if r.Awarded == 0 {
		return 0
	}
	return float64(r.Requests) / float64(r.Awarded)
}

// intakeRate is rows recorded per second by the Backfill call.
func (r backfillResult) intakeRate() float64 {
	if r.Intake <= 0 {
		return 0
	}
	return float64(r.Summary.Accepted) / r.Intake.Seconds()
}

// awardRate is awards per second between the first and the last award answered; with a single
// batch there is no span, and the whole time stands in for it.
func (r backfillResult) awardRate() float64 {
	span := r.AwardSpan
	if span <= 0 {
		span = r.Total
	}
	if span <= 0 {
		return 0
	}
	return float64(r.Awarded) / span.Seconds()
}

// extrapolate is the time a backfill of n learners would take if intake and awards kept their
// measured rates: intake and awarding overlap (the workers award while the file is read), so
// the slower of the two bounds the run, after the lag to the first award. It is linear: a class
// listing that grows with the class (one page per 500 assertions) is not in it.
func (r backfillResult) extrapolate(n int) (time.Duration, bool) {
	in, aw := r.intakeRate(), r.awardRate()
	if r.Err != nil || in <= 0 || aw <= 0 {
		return 0, false
	}
	slowest := max(float64(n)/in, float64(n)/aw)
	return r.FirstAward + time.Duration(slowest*float64(time.Second)), true
}

// runBackfill writes a backfill CSV of N new learners, starts a `work` bridge in a process of its
// own against a host at rate R and latency L, then runs the backfill with apply in this process
// as `bridge backfill --yes FILE` would, and times it until the host holds N assertions. The
// host stays in this process, so the `work` process's peak RSS is the bridge's alone.
func (b *Bench) runBackfill(ctx context.Context) (backfillResult, error) {
	n := b.cfg.BackfillN
	out := backfillResult{N: n, Rate: b.cfg.Rate, Latency: b.cfg.Latency}
	file := filepath.Join(b.dir, "backfill.csv")
	if err := writeBackfillCSV(file, b.nextLearners(n), n); err != nil {
		return out, err
	}
	defer os.Remove(file)

	host, err := startFakeHost(hostOptions{Class: benchClass, Latency: b.cfg.Latency, Rate: float64(b.cfg.Rate)})
	if err != nil {
		return out, err
	}
	defer host.close()
	opts := bridgeOptions{Command: app.CmdWork, RedisURL: b.redis.url(0), MappingFile: b.mapping,
		Host: host, RateLimit: b.cfg.Rate, Concurrency: b.cfg.Concurrency}
	// The command reads the same environment as the workers, as on one host.
	cfg, err := bridgeConfig(ctx, opts)
	if err != nil {
		return out, err
	}
	startedProfile, err := b.profile(PhaseBackfill)
	if err != nil {
		return out, err
	}
	// Stopped before the bridge's shutdown, as in the other phases, and on every early return.
	stopProfile := sync.OnceFunc(startedProfile)
	defer stopProfile()
	mark := b.cpuMark(ctx)
	host.resetCounts()
	br, err := startChildBridge(ctx, opts, b.bridgeLog, b.childProfile(PhaseBackfill))
	if err != nil {
		return out, err
	}
	// Error paths only: the normal path stops it below, where the peak RSS is taken.
	defer func() { _, _ = br.stop() }()
	mark.follow(br, true)

	wctx, cancel := context.WithTimeoutCause(ctx, b.cfg.BackfillTime, errTimeout)
	defer cancel()
	cmd := app.New(cfg, "backfill", b.bridgeLog, io.Discard)
	start := time.Now()
	out.Summary, err = cmd.Backfill(wctx, file, true, io.Discard, io.Discard)
	out.Intake = time.Since(start)
	if err != nil {
		out.Err = fmt.Errorf("backfill of %d learners: %w", n, err)
	} else if out.Summary.Accepted != n {
		out.Err = fmt.Errorf("backfill of %d learners accepted %d (invalid %d, duplicate %d, unchanged %d, ignored %d)",
			n, out.Summary.Accepted, out.Summary.Invalid, out.Summary.Duplicate, out.Summary.Unchanged, out.Summary.Ignored)
	}
	b.log.Info("backfill intake", "learners", n, "accepted", out.Summary.Accepted, "took", out.Intake.Round(time.Millisecond).String())

	if out.Err == nil {
		out.Awarded, out.Err = b.waitBackfill(wctx, host, n)
		out.Total = host.lastAwardAt().Sub(start)
		if out.Err != nil {
			out.Total = time.Since(start)
		}
	} else {
		out.Awarded, out.Total = host.awardCount(), time.Since(start)
	}
	if first := host.firstAwardAt(); !first.IsZero() {
		out.FirstAward = first.Sub(start)
		out.AwardSpan = host.lastAwardAt().Sub(first)
	}
	out.CPU = mark.since(ctx)
	stopProfile()
	out.Counts, out.Late429 = host.snapshot(time.Second)
	out.Throttled = host.throttledCount()
	for k, v := range out.Counts {
		if k != kindToken {
			out.Requests += v
		}
	}
	if out.BridgeRSS, err = br.stop(); err != nil {
		b.log.Warn("stop bridge", "err", err)
	}
	b.log.Info("backfill", "learners", n, "awarded", out.Awarded, "total", out.Total.Round(time.Millisecond).String(),
		"requests", out.Requests, "counts", out.Counts, "bridge_peak_rss_mib", out.BridgeRSS>>20)
	return out, out.Err
}

// waitBackfill waits for n assertions within ctx, logging progress every 10 seconds: a backfill
// may run for minutes.
func (b *Bench) waitBackfill(ctx context.Context, host *fakeHost, n int) (int, error) {
	const every = 10 * time.Second
	limit := 1 + int(b.cfg.BackfillTime/every)
	for range limit {
		sub, cancel := context.WithTimeout(ctx, every)
		got, err := host.waitAwards(sub, n)
		cancel()
		if err == nil || ctx.Err() != nil {
			return got, err
		}
		counts, late := host.snapshot(time.Second)
		b.log.Info("backfill awarding", "awarded", got, "of", n, "batches", counts[kindBatch],
			"single", counts[kindAward], "look-ups", counts[kindLookup], "listings", counts[kindListing], "late 429", late)
	}
	got, err := host.waitAwards(ctx, n)
	return got, err
}

// writeBackfillCSV writes n learners from uid first, each with a certificate of the benchmark's
// course, in the CSV format of `bridge backfill` (user_id,email,course_key,mode,issued_on,name,
// grade).
func writeBackfillCSV(path string, first int64, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("backfill file: %w", err)
	}
	w := csv.NewWriter(f) // buffered
	if err := w.Write([]string{"user_id", "email", "course_key", "mode", "issued_on", "name", "grade"}); err != nil {
		_ = f.Close()
		return fmt.Errorf("backfill file: %w", err)
	}
	for i := range n {
		uid := first + int64(i)
		if err := w.Write([]string{strconv.FormatInt(uid, 10), learnerEmail(uid), benchCourse, "honor", backfillIssuedOn,
			"Bench Learner", "0.87"}); err != nil {
			_ = f.Close()
			return fmt.Errorf("backfill file: %w", err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return fmt.Errorf("backfill file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backfill file: %w", err)
	}
	return nil
}
