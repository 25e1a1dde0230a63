package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/ledger"
)

// Reconciler runs reconcile jobs and bulk runs (reconcile.Reconciler).
type Reconciler interface {
	Run(ctx context.Context, k ledger.RowKey, jobID string) error
	RunBulk(ctx context.Context, badgeClass string) error
}

// handler is the asynq handler of reconcile jobs.
type handler struct {
	rec Reconciler
	log *slog.Logger
}

// ProcessTask runs the job. Errors are logged, not returned: with MaxRetry 0 asynq would archive
// the task, keeping a dead copy for 90 days. Retries go through the ledger instead: the owed mark
// stays until a job that saw the latest version settles it, and the sweeper queues the row again
// when it is due.
func (h handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	k, err := parsePayload(t)
	if err != nil {
		return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
	}
	id, _ := asynq.GetTaskID(ctx)
	if err := h.rec.Run(ctx, k, id); err != nil && ctx.Err() == nil {
		h.log.Warn("reconcile failed; the sweeper will queue the row again", "row", k.String(), "err", err)
	}
	return nil
}

// bulkHandler is the asynq handler of bulk runs. As for jobs, errors are logged, not returned:
// the rows stay in the bulk set and owed, and the sweeper queues the next run.
type bulkHandler handler

func (h bulkHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p bulkPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.BadgeClass == "" {
		return fmt.Errorf("bulk payload %q: want badge_class: %w", t.Payload(), asynq.SkipRetry)
	}
	if err := h.rec.RunBulk(ctx, p.BadgeClass); err != nil && ctx.Err() == nil {
		h.log.Warn("bulk run failed; the sweeper will queue the class again", "badge_class", p.BadgeClass, "err", err)
	}
	return nil
}
