package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one bounded run of operations gave.
type loadResult struct {
	OK, Failed int
	Elapsed    time.Duration
	Latencies  []time.Duration // of the successful operations, sorted
	FirstErr   error
}

// rate is successful operations per second.
func (r loadResult) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// percentile is the nearest-rank percentile p (0–100) of the sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// runLoad calls op with indexes 0…n-1 from conc goroutines, until all n ran or maxDur passed
// (whichever is first), and times each call. Both bounds always apply: a benchmark that meets a
// stuck bridge ends anyway.
func runLoad(ctx context.Context, conc, n int, maxDur time.Duration, op func(ctx context.Context, i int) error) loadResult {
	ctx, cancel := context.WithTimeoutCause(ctx, maxDur, errTimeout)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	res := loadResult{Latencies: make([]time.Duration, 0, n)}
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, n/conc+1)
			var ok, failed int
			var firstErr error
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					break
				}
				t := time.Now()
				err := op(ctx, i)
				d := time.Since(t)
				switch {
				case err == nil:
					ok++
					local = append(local, d)
				case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
					// The time bound cut this call short: it is neither a success nor a failure.
				default:
					failed++
					if firstErr == nil {
						firstErr = fmt.Errorf("operation %d: %w", i, err)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.OK += ok
			res.Failed += failed
			res.Latencies = append(res.Latencies, local...)
			if res.FirstErr == nil {
				res.FirstErr = firstErr
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	sort.Slice(res.Latencies, func(i, j int) bool { return res.Latencies[i] < res.Latencies[j] })
	return res
}
