// Package backoff says how long to wait before trying again something that keeps failing.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: Base doubling with each attempt up to Max, and each wait
// drawn at random between Low and High times that, so that callers that failed together do not
// try again together.
type Policy struct {
	Base, Max time.Duration
	Low, High float64
}

// Delay is the wait before attempt n (1-based) after n consecutive failures.
func (p Policy) Delay(n int) time.Duration {
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return time.Duration(float64(d) * (p.Low + (p.High-p.Low)*rand.Float64()))
}

// Jitter is a random wait up to max, added to a wait the other side imposed (a login block, a
// rate limit) so that every waiting caller does not come back in the same instant.
func Jitter(max time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(max) + 1)) }

// Sleep waits d or until ctx ends, and reports whether the whole wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
