package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/badgebridge/bridge/internal/ledger"
)

// Sweeper queues a fresh job for every row whose reconcile is owed and due: rows whose intake
// job was lost, whose job crashed or was parked by asynq, and timers (verification after
// BRIDGE_SETTLE, retries, revoke_after deadlines).
type Sweeper struct {
	Ledger   *ledger.Ledger
	Enqueuer *Enqueuer
	Log      *slog.Logger
	Interval time.Duration // how often to look, default 2s
	// Requeue is how long a claimed row waits before it is queued again if its job did not
	// clear or move the mark: longer than a job's lease.
	Requeue time.Duration
	Metrics *Metrics
}

// Run sweeps until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("sweep failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep queues jobs for the rows due now and reports how many.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		keys, err := s.Ledger.ClaimDue(ctx, time.Now(), 500, s.Requeue)
		if err != nil {
			return total, err
		}
		for _, k := range keys {
			if err := s.Enqueuer.Enqueue(ctx, k); err != nil {
				// The claim only moved the mark: the row is owed again after Requeue.
				return total, err
			}
		}
		total += len(keys)
		s.Metrics.requeued(len(keys))
		if len(keys) < 500 {
			return total, nil
		}
	}
}
