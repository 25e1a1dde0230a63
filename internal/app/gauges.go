package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/ledger"
)

// The ledger and badge-host state the alerts watch, as gauges read from the queue Redis at
// scrape time. Every process reads the same shared keys, so every pod reports the same values:
// queries take max by release, and one pod's failed read does not hide the value.
var (
	owedRowsDesc = prometheus.NewDesc("bridge_owed_rows",
		"Ledger rows with a reconcile owed, due now or at a later check (owed_rows of GET /v1/status).", nil, nil)
	owedDueRowsDesc = prometheus.NewDesc("bridge_owed_due_rows",
		"Owed ledger rows whose reconcile is due now and that the sweeper has not queued yet (owed_due of GET /v1/status).", nil, nil)
	parkedRowsDesc = prometheus.NewDesc("bridge_parked_rows",
		"Ledger rows parked in state failed (GET /v1/failures); they wait for POST /v1/failures/retry.", nil, nil)
	loginBlockedDesc = prometheus.NewDesc("bridge_badgehost_login_blocked_seconds",
		"Seconds until the badge-host login block shared by all replicas ends; 0 when logins are not blocked.", nil, nil)
)

const (
	// gaugeReadTimeout bounds how long a scrape waits for the Redis reads: a slow or unreachable
	// Redis costs a scrape at most this, and the gauges are then left out of it.
	gaugeReadTimeout = 2 * time.Second
	// gaugeMaxAge is how long one read serves scrapes: several Prometheus servers (an HA pair, a
	// second one for tests) scraping every pod cost at most one read per pod per period.
	gaugeMaxAge = 5 * time.Second
)

// stateSource is what the gauges read; each function reads the queue Redis.
type stateSource struct {
	owed   func(ctx context.Context, now time.Time) (total, due int64, err error)
	parked func(ctx context.Context) (int64, error)
	// login is nil in a process with no badge-host client (bridge serve without
	// BRIDGE_BADGR_URL): the block is keyed by the host's credentials, which it does not know.
	login func(ctx context.Context) (time.Time, error)
}

// stateGauges is a prometheus.Collector of bridge_owed_rows, bridge_owed_due_rows,
// bridge_parked_rows and bridge_badgehost_login_blocked_seconds.
//
// A gauge whose read failed (or did not finish within gaugeReadTimeout) has no sample in that
// scrape, rather than its last value. A stale value would be reported as current in both
// directions: rows put back with POST /v1/failures/retry would still show as parked, and an
// ended login block as running, for as long as Redis is unreachable, so alerts would keep
// firing (or stay quiet) on data nobody read. A missing sample is Prometheus's "unknown": the
// series goes stale and the dashboard shows a gap. An outage of the queue Redis has alerts of
// its own (webhook 5xx, readiness), and since every pod reads the same keys, the alerts'
// max by release still has the value while any pod can read it; the login-block alert reads
// max_over_time so that a short gap does not restart its `for`.
type stateGauges struct {
	src     stateSource
	now     func() time.Time
	timeout time.Duration // a scrape's wait for a read
	maxAge  time.Duration // how long one read serves scrapes

	mu      sync.Mutex
	last    stateRead     // the newest finished read
	pending chan struct{} // closed when the read in flight ends; nil when none is
}

// stateRead is one read of the state; a field's error set means no sample for its gauge(s).
type stateRead struct {
	at           time.Time // when the read started; zero: never read
	owed, due    int64
	owedErr      error
	parked       int64
	parkedErr    error
	blockedUntil time.Time // zero: not blocked
	loginErr     error
}

// newStateGauges reads l and, when host is not nil, its login block.
func newStateGauges(l *ledger.Ledger, host *badgr.Client) *stateGauges {
	src := stateSource{owed: l.Owed, parked: l.Parked}
	if host != nil {
		src.login = host.LoginBlockedUntil
	}
	return &stateGauges{src: src, now: time.Now, timeout: gaugeReadTimeout, maxAge: gaugeMaxAge}
}

func (g *stateGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- owedRowsDesc
	ch <- owedDueRowsDesc
	ch <- parkedRowsDesc
	if g.src.login != nil {
		ch <- loginBlockedDesc
	}
}

func (g *stateGauges) Collect(ch chan<- prometheus.Metric) {
	r, ok := g.current()
	if !ok {
		return
	}
	if r.owedErr == nil {
		ch <- prometheus.MustNewConstMetric(owedRowsDesc, prometheus.GaugeValue, float64(r.owed))
		ch <- prometheus.MustNewConstMetric(owedDueRowsDesc, prometheus.GaugeValue, float64(r.due))
	}
	if r.parkedErr == nil {
		ch <- prometheus.MustNewConstMetric(parkedRowsDesc, prometheus.GaugeValue, float64(r.parked))
	}
	if g.src.login != nil && r.loginErr == nil {
		// Counted down at each scrape, also while a read is served from the cache.
		left := 0.0
		if !r.blockedUntil.IsZero() {
			left = max(r.blockedUntil.Sub(g.now()).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(loginBlockedDesc, prometheus.GaugeValue, left)
	}
}

// current returns a read at most maxAge old, starting one when there is none and none is in
// flight, and waiting at most timeout for it. ok is false when no read finished in time.
//
// The read runs in a goroutine of its own: the Redis client does not stop a command at a
// context's deadline (only at its socket timeouts), and a scrape must not wait for those. At
// most one read is in flight, so a hung Redis costs one goroutine, not one per scrape.
func (g *stateGauges) current() (stateRead, bool) {
	g.mu.Lock()
	now := g.now()
	if r := g.last; !r.at.IsZero() && now.Sub(r.at) < g.maxAge {
		g.mu.Unlock()
		return r, true
	}
	done := g.pending
	if done == nil {
		done = make(chan struct{})
		g.pending = done
		go g.read(now, done)
	}
	g.mu.Unlock()

	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return stateRead{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last, true
}

// read reads the state as of at and stores it as the newest read.
func (g *stateGauges) read(at time.Time, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	// After the deadline the reads left are not sent: the gauges are left out either way.
	r := stateRead{at: at, owedErr: ctx.Err()}
	if r.owedErr == nil {
		r.owed, r.due, r.owedErr = g.src.owed(ctx, at)
	}
	if r.parkedErr = ctx.Err(); r.parkedErr == nil {
		r.parked, r.parkedErr = g.src.parked(ctx)
	}
	if r.loginErr = ctx.Err(); r.loginErr == nil && g.src.login != nil {
		r.blockedUntil, r.loginErr = g.src.login(ctx)
	}
	g.mu.Lock()
	g.last, g.pending = r, nil
	g.mu.Unlock()
	close(done)
}
