package queue

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait before retry n (1-based) of a failed reconcile: 10 s doubling each time,
// capped at 6 h, with ±20 % jitter so rows that failed together do not retry together. With the
// default 12 retries the waits add up to about half a day.
func Backoff(n int, retryAfter time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := 10 * time.Second
	for i := 1; i < n && d < 6*time.Hour; i++ {
		d *= 2
	}
	d = min(d, 6*time.Hour)
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return max(d, retryAfter)
}
