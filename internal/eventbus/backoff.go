package eventbus

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 30 * time.Second
)

// backoff is the wait after the n-th consecutive failed cycle (n ≥ 1): 200 ms doubling up to
// 30 s, each drawn from its upper half so replicas that failed together do not retry together.
func backoff(n int) time.Duration {
	d := backoffMax
	if n <= 8 { // 200 ms · 2⁸ > 30 s
		d = min(backoffMin<<max(n-1, 0), backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends, and reports whether the whole wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// outage turns a run of failures of one dependency into one warning when it starts and one
// info line when it ends, instead of a line per retry. Only Run's goroutine uses it.
type outage struct {
	what  string
	since time.Time // zero: not failing
}

func (o *outage) failed(log *slog.Logger, err error, attrs ...any) {
	if !o.since.IsZero() {
		return
	}
	o.since = time.Now()
	log.Warn(o.what+" failing; retrying with backoff, unacknowledged entries stay pending",
		append(attrs, "err", err)...)
}

func (o *outage) recovered(log *slog.Logger) {
	if o.since.IsZero() {
		return
	}
	log.Info(o.what+" working again", "down_for", time.Since(o.since).Round(time.Millisecond).String())
	o.since = time.Time{}
}
