// Package bench measures the bridge against its baselines in one run (issue 10, item 4): a
// private redis-server, the bridge and a fake badge host with latency and a rate limit, all on
// loopback. cmd/bridge-bench parses flags and calls Run. The bridges whose memory is a target
// (ingest's `serve`, backfill's `work`) run in processes of their own, this binary re-executed
// with -child-bridge (RunChildBridge); the others run in this process.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Phases, in the order they run; Config.Phases selects some of them.
const (
	PhaseIngest    = "ingest"
	PhaseEventBus  = "eventbus"
	PhaseIssue     = "issue"
	PhaseIssueRate = "issue-rate"
	PhaseBackfill  = "backfill"
	PhaseE2E       = "e2e"
)

// AllPhases is every phase in run order.
var AllPhases = []string{PhaseIngest, PhaseEventBus, PhaseIssue, PhaseIssueRate, PhaseBackfill, PhaseE2E}

// Config says how much to measure. Every loop is bounded by a count and a duration.
type Config struct {
	Phases []string

	IngestConc []int         // webhook concurrency levels
	IngestN    int           // requests per level (bridge and baseline each)
	IngestTime time.Duration // longest a level may run

	BusN    int           // event-bus entries
	BusTime time.Duration // longest the bridge or the baseline may take for them

	Latency     time.Duration // the fake host's latency on every request
	Concurrency int           // BRIDGE_WORKER_CONCURRENCY
	Rate        int           // BRIDGE_BADGR_RATE_LIMIT of the production-like runs (and the host's limit)
	IssueN      int           // awards of the latency-bound issuance run
	IssueRate   int           // its rate limit: high, so that C / L is the bound
	RateN       int           // awards of the rate-bound issuance run (at Rate)
	IssueTime   time.Duration // longest an issuance run may take

	BackfillN    int           // learners in the backfill file (bulk mode, at Rate and Latency)
	BackfillTime time.Duration // longest the backfill phase may take, intake and awards together

	E2EN   int           // end-to-end samples
	E2EGap time.Duration // idle time between them

	CPUProfile string // when set, a CPU profile per phase: <CPUProfile>-<phase>.pprof
}

// Quick shrinks c to a smoke run of well under 30 seconds.
func (c *Config) Quick() {
	c.IngestN, c.IngestTime = 200, 5*time.Second
	c.BusN, c.BusTime = 200, 10*time.Second
	c.IssueN, c.RateN, c.IssueTime = 100, 10, 20*time.Second
	// Three batch awards: enough to see a listing or look-ups shared by several batches.
	c.BackfillN, c.BackfillTime = 300, 2*time.Minute
	c.E2EN, c.E2EGap = 3, 300*time.Millisecond
}

// Validate rejects a configuration that could not measure anything.
func (c Config) Validate() error {
	for _, p := range c.Phases {
		if !slices.Contains(AllPhases, p) {
			return fmt.Errorf("unknown phase %q (want some of %s)", p, strings.Join(AllPhases, ","))
		}
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"ingest-n", c.IngestN}, {"bus-n", c.BusN}, {"n", c.IssueN}, {"rate-n", c.RateN}, {"backfill-n", c.BackfillN}, {"e2e-n", c.E2EN}, {"c", c.Concurrency}} {
		if v.n < 1 {
			return fmt.Errorf("-%s must be at least 1, got %d", v.name, v.n)
		}
	}
	for _, l := range c.IngestConc {
		if l < 1 || l > 1024 {
			return fmt.Errorf("-conc: %d is not between 1 and 1024", l)
		}
	}
	if c.BackfillTime <= 0 {
		return fmt.Errorf("-backfill-time must be positive, got %s", c.BackfillTime)
	}
	if c.Rate < 0 || c.IssueRate < 0 {
		return fmt.Errorf("rate limits must be 0 (unlimited) or more")
	}
	return nil
}

// Bench is one run: its Redis, mapping and learner counter.
type Bench struct {
	cfg       Config
	log       *slog.Logger
	bridgeLog *slog.Logger
	redis     *redisServer
	dir       string // the run's scratch directory (mapping, backfill file)
	mapping   string
	learner   int64 // the next unused LMS user id
}

// Results is everything one run measured.
type Results struct {
	Config     Config
	Ingest     *ingestResult
	Bus        *busResult
	Issue      *issueResult
	IssueRate  *issueResult
	Backfill   *backfillResult
	E2E        *e2eResult
	PeakRSS    int64 // this process: in-process bridges, fake host and load generator together
	RedisRSS   int64
	GoVersion  string
	Wall       time.Duration
	PhaseError map[string]error
}

// Run measures the selected phases and returns what it measured. A phase that fails is
// recorded in Results.PhaseError and the others still run.
// log is the benchmark's progress; bridgeLog is what the bridges under test log.
func Run(ctx context.Context, cfg Config, log, bridgeLog *slog.Logger) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "bridge-bench")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	b := &Bench{cfg: cfg, log: log, bridgeLog: bridgeLog, dir: dir, learner: 1_000_000}
	if b.mapping, err = writeMapping(dir); err != nil {
		return nil, err
	}
	if b.redis, err = startRedis(ctx); err != nil {
		return nil, err
	}
	defer b.redis.stop()

	res := &Results{Config: cfg, PhaseError: map[string]error{}}
	for _, phase := range cfg.Phases {
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		log.Info("phase", "name", phase)
		if err := b.flush(ctx); err != nil {
			return res, err
		}
		switch phase {
		case PhaseIngest:
			r, err := b.runIngest(ctx)
			res.Ingest, res.PhaseError[phase] = &r, err
		case PhaseEventBus:
			r, err := b.runEventBus(ctx)
			res.Bus, res.PhaseError[phase] = &r, err
		case PhaseIssue:
			r, err := b.runIssuance(ctx, PhaseIssue, cfg.IssueN, cfg.IssueRate)
			res.Issue, res.PhaseError[phase] = &r, err
		case PhaseIssueRate:
			r, err := b.runIssuance(ctx, PhaseIssueRate, cfg.RateN, cfg.Rate)
			res.IssueRate, res.PhaseError[phase] = &r, err
		case PhaseBackfill:
			r, err := b.runBackfill(ctx)
			res.Backfill, res.PhaseError[phase] = &r, err
		case PhaseE2E:
			r, err := b.runEndToEnd(ctx)
			res.E2E, res.PhaseError[phase] = &r, err
		}
		if err := res.PhaseError[phase]; err != nil {
			log.Error("phase failed", "name", phase, "err", err)
		}
	}
	res.PeakRSS = peakRSS("self")
	res.RedisRSS = peakRSS(strconv.Itoa(b.redis.pid()))
	res.Wall = time.Since(start)
	return res, nil
}

// flush empties the benchmark's Redis between phases, so each starts from nothing.
func (b *Bench) flush(ctx context.Context) error {
	c := b.redis.client(0)
	defer c.Close()
	if err := c.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("FLUSHALL: %w", err)
	}
	return nil
}

// nextLearners reserves n new LMS user ids and returns the first.
func (b *Bench) nextLearners(n int) int64 {
	first := b.learner
	b.learner += int64(n)
	return first
}

// profile starts a CPU profile of one phase when asked to; the returned func stops it.
func (b *Bench) profile(phase string) (func(), error) {
	if b.cfg.CPUProfile == "" {
		return func() {}, nil
	}
	path := b.cfg.CPUProfile + "-" + phase + ".pprof"
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.log.Warn("close cpu profile", "path", path, "err", err)
		}
	}, nil
}

// childProfile is the CPU profile file of a child bridge in phase, when profiles are asked for.
func (b *Bench) childProfile(phase string) string {
	if b.cfg.CPUProfile == "" {
		return ""
	}
	return b.cfg.CPUProfile + "-" + phase + "-bridge.pprof"
}

// cpuUse is CPU time spent during a stretch of wall time, by this process, by a bridge in a
// process of its own and by Redis.
type cpuUse struct {
	Wall, Self, Redis time.Duration
	// Bridge is the child bridge's CPU when Apart; otherwise the bridge's CPU is in Self.
	Bridge   time.Duration
	Apart    bool
	Commands map[string]int64 // Redis commands run meanwhile, by name
}

type cpuMarker struct {
	b          *Bench
	rdb        *redis.Client
	wall       time.Time
	self, redi float64
	cmds       map[string]int64
	child      *childBridge
	childBase  time.Duration
}

func (b *Bench) cpuMark(ctx context.Context) cpuMarker {
	m := cpuMarker{b: b, rdb: b.redis.client(0), wall: time.Now(), self: selfCPU()}
	m.redi, _ = redisCPU(ctx, m.rdb)
	m.cmds, _ = commandCalls(ctx, m.rdb)
	return m
}

// follow counts a child bridge's CPU in the stretch: from its start when it was started after
// the mark, else from now.
func (m *cpuMarker) follow(c *childBridge, startedAfterMark bool) {
	m.child, m.childBase = c, 0
	if !startedAfterMark {
		if t, err := c.cpu(); err == nil {
			m.childBase = t
		} else {
			m.b.log.Warn("child bridge CPU", "err", err)
		}
	}
}

func (m cpuMarker) since(ctx context.Context) cpuUse {
	defer m.rdb.Close()
	wall := time.Since(m.wall)
	var bridge time.Duration
	if m.child != nil {
		if t, err := m.child.cpu(); err == nil {
			bridge = t - m.childBase
		} else {
			m.b.log.Warn("child bridge CPU", "err", err)
		}
	}
	// A phase cut short by Ctrl-C or its time limit still reports what it used so far.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r, _ := redisCPU(ctx, m.rdb)
	cmds, err := commandCalls(ctx, m.rdb)
	if err != nil || m.cmds == nil {
		// Without both counts there is no difference to show; a nil map would panic below.
		cmds = map[string]int64{}
	}
	for k, v := range m.cmds {
		if _, ok := cmds[k]; ok {
			cmds[k] -= v
		}
	}
	// The INFO calls of the marks themselves are not the bridge's.
	delete(cmds, "info")
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	return cpuUse{Wall: wall, Self: sec(selfCPU() - m.self), Redis: sec(r - m.redi), Bridge: bridge, Apart: m.child != nil,
		Commands: cmds}
}

// selfCPU is this process's user+system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
