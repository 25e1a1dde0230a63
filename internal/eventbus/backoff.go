package eventbus

import (
	"log/slog"
	"sync"
	"time"

	"github.com/badgebridge/bridge/internal/backoff"
)

// retryPolicy spaces the retries of a failing cycle: 200 ms doubling up to 30 s, each drawn from
// its upper half so replicas that failed together do not retry together.
var retryPolicy = backoff.Policy{Base: 200 * time.Millisecond, Max: 30 * time.Second, Low: 0.5, High: 1}

// wait is the wait after the n-th consecutive failed cycle (n ≥ 1).
func wait(n int) time.Duration { return retryPolicy.Delay(n) }

// outage turns a run of failures of one dependency into one warning when it starts and one
// info line when it ends, instead of a line per retry. It is safe for concurrent use: the
// lanes of a batch report to it.
type outage struct {
	what  string
	mu    sync.Mutex
	since time.Time // zero: not failing
}

func (o *outage) failed(log *slog.Logger, err error, attrs ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.since.IsZero() {
		return
	}
	o.since = time.Now()
	log.Warn(o.what+" failing; retrying with backoff, unacknowledged entries stay pending",
		append(attrs, "err", err)...)
}

func (o *outage) recovered(log *slog.Logger) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	log.Info(o.what+" working again", "down_for", time.Since(o.since).Round(time.Millisecond).String())
	o.since = time.Time{}
}
