package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/ledger"
)

// sweepBatch is how many due rows one claim takes.
const sweepBatch = 500

// Sweeper queues a job for every row whose reconcile is owed and due and whose job is gone:
// rows whose intake job was lost, whose job crashed or was parked by asynq, and timers
// (verification after BRIDGE_SETTLE, retries, revoke_after deadlines). A row whose job is
// still waiting in the queue keeps it: queueing another would only grow the queue.
type Sweeper struct {
	Ledger   *ledger.Ledger
	Enqueuer *Enqueuer
	// Inspector answers whether a row's queued job still exists (NewWorker sets one).
	Inspector *asynq.Inspector
	Log       *slog.Logger
	Interval  time.Duration // how often to look, default 2s
	// Requeue is how long a claimed row waits before it is looked at again if its job did not
	// clear or move the mark: longer than a job's lease.
	Requeue time.Duration
	Metrics *Metrics

	repair ledger.RepairCursor // where the index repair goes on from (Run's goroutine only)
}

// repairBatch is how many rows (and index entries) each sweep checks for the index repair: a
// pass over 50,000 rows takes about 100 sweeps, a few minutes at the default interval.
const repairBatch = 500

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
			s.log().Warn("sweep failed; will retry", "err", err)
		}
		if err := s.ensureBulkRuns(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("queueing bulk runs failed; will retry", "err", err)
		}
		s.repairIndexes(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep queues jobs for the rows due now whose job is gone, and reports how many it queued.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	insp := s.Inspector
	total := 0
	for {
		keys, err := s.Ledger.ClaimDue(ctx, time.Now(), sweepBatch, s.Requeue)
		if err != nil {
			return total, err
		}
		ids, err := s.Ledger.QueuedJobs(ctx, keys)
		if err != nil {
			// The claim only moved the marks: the rows are due again after Requeue.
			return total, err
		}
		batch := len(keys)
		if keys, ids, err = s.routeBulk(ctx, keys, ids); err != nil {
			return total, err
		}
		n := 0
		for i, k := range keys {
			queued, err := s.requeue(ctx, insp, k, ids[i])
			if err != nil {
				s.Metrics.requeued(n)
				return total + n, err
			}
			if queued {
				n++
			}
		}
		total += n
		s.Metrics.requeued(n)
		if batch < sweepBatch {
			return total, nil
		}
	}
}

// requeue queues a job for k unless one is still waiting in the queue (id, its slot) or runs.
func (s *Sweeper) requeue(ctx context.Context, insp *asynq.Inspector, k ledger.RowKey, id string) (bool, error) {
	if id != "" {
		gone, err := jobGone(insp, id)
		if err != nil {
			return false, fmt.Errorf("look up job %s of row %s: %w", id, k, err)
		}
		if !gone {
			return false, nil
		}
		released, err := s.Ledger.ReleaseJob(ctx, k, id)
		if err != nil {
			return false, err
		}
		if !released {
			// The job started after the slot was read (and is gone because it finished), or
			// the row was queued again: either way the owed mark is current without us.
			return false, nil
		}
	}
	return s.Enqueuer.ensure(ctx, k, true)
}

// jobGone reports whether a queued job will never run: asynq lost it (a Redis restart without
// persistence, a deleted task), archived it (a crashed worker's lease expired: MaxRetry is 0),
// or finished it without clearing the slot. An archived copy is deleted: its replacement does
// its work, and archives keep tasks for 90 days.
func jobGone(insp *asynq.Inspector, id string) (bool, error) {
	state, err := taskState(insp, id)
	return state == taskGone, err
}

// What the sweeper needs to know of a task.
const (
	taskGone    = iota // will never run (see jobGone)
	taskWaiting        // pending, scheduled, retry or aggregating: it will run
	taskActive         // being processed, or so asynq believes
)

// taskState is jobGone with active tasks told apart from waiting ones.
func taskState(insp *asynq.Inspector, id string) (int, error) {
	info, err := insp.GetTaskInfo(Queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return taskGone, nil
	case err != nil:
		return taskWaiting, err
	}
	switch info.State {
	case asynq.TaskStateArchived:
		if err := insp.DeleteTask(Queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return taskWaiting, err
		}
		return taskGone, nil
	case asynq.TaskStateCompleted:
		return taskGone, nil
	case asynq.TaskStateActive:
		// Active but not started far enough to clear the slot: it will run and read the row.
		return taskActive, nil
	}
	return taskWaiting, nil
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// repairIndexes takes one step of the background repair of the row indexes the admin API pages
// through (see ledger.RepairIndexes).
func (s *Sweeper) repairIndexes(ctx context.Context) {
	next, fixed, done, err := s.Ledger.RepairIndexes(ctx, s.repair, repairBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log().Warn("index repair failed; will retry", "err", err)
		}
		return
	}
	s.repair = next
	if fixed > 0 {
		s.log().Info("row indexes repaired", "entries", fixed, "pass_done", done)
	}
}
