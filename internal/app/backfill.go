package app

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/backfill"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/reconcile"
)

// Backfill feeds a file of historical certificates through the live intake (`bridge backfill`).
// Without apply it only prints what it would do and touches nothing. progress is drawn on only
// when it is a terminal.
func (a *App) Backfill(ctx context.Context, file string, apply bool, out, progress io.Writer) (backfill.Summary, error) {
	cfg := a.cfg
	if err := cfg.RequireQueue(); err != nil {
		return backfill.Summary{}, err
	}
	if err := cfg.RequireBadgeHost(); err != nil {
		return backfill.Summary{}, err
	}
	m, err := a.loadMapping(false)
	if err != nil {
		return backfill.Summary{}, err
	}
	f, err := os.Open(file)
	if err != nil {
		return backfill.Summary{}, fmt.Errorf("backfill: %w", err)
	}
	defer f.Close()
	o := backfill.Options{Apply: apply, Mapping: m, Out: out}
	if isTerminal(progress) {
		o.Progress = progress
	}
	if apply {
		rdb, err := openRedis(cfg)
		if err != nil {
			return backfill.Summary{}, err
		}
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return backfill.Summary{}, fmt.Errorf("queue Redis unreachable: %w", err)
		}
		l := ledger.New(rdb, ledger.Options{EventRetention: cfg.EventRetention})
		o.Handler = &intake.Intake{
			Ledger:   l,
			Mapping:  m,
			Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, jobTimeout(reconcile.Lease(cfg.BadgrTimeout))),
			Log:      a.log,
		}
	}
	return backfill.Run(ctx, f, file, o)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
