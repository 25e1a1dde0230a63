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
	"github.com/badgebridge/bridge/internal/reevaluate"
	"github.com/badgebridge/bridge/internal/rules"
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
		in, closeRedis, err := a.offlineIntake(ctx, m)
		if err != nil {
			return backfill.Summary{}, err
		}
		defer closeRedis()
		o.Handler = in
	}
	return backfill.Run(ctx, f, file, o)
}

// offlineIntake is the live intake for a command that feeds it from outside a serving process
// (backfill, reevaluate): the same ledger, mapping and queue as `run`, except that the rows go
// to bulk runs of their badge class (batch awards) rather than a job each.
func (a *App) offlineIntake(ctx context.Context, m *rules.Mapping) (*intake.Intake, func(), error) {
	cfg := a.cfg
	rdb, err := openRedis(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("queue Redis unreachable: %w", err)
	}
	l := ledger.New(rdb, ledger.Options{EventRetention: cfg.EventRetention})
	in := &intake.Intake{
		Ledger:    l,
		Mapping:   m,
		Enqueuer:  queue.NewBulkEnqueuer(queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, jobTimeout(reconcile.Lease(cfg.BadgrTimeout)))),
		Log:       a.log,
		RecordAll: cfg.LearnerRecord == "all",
		// The same waits as the service: a learner reported done has its writes durable.
		Durable: durableGate(ctx, cfg, rdb, a.log),
	}
	return in, func() { _ = rdb.Close() }, nil
}

// Reevaluate applies the current mapping (or one rule of it) to every learner the bridge has a
// record of (`bridge reevaluate`). Without apply it only prints what would change.
func (a *App) Reevaluate(ctx context.Context, rule string, apply bool, out, progress io.Writer) (reevaluate.Summary, error) {
	cfg := a.cfg
	if err := cfg.RequireQueue(); err != nil {
		return reevaluate.Summary{}, err
	}
	if apply {
		if err := cfg.RequireBadgeHost(); err != nil {
			return reevaluate.Summary{}, err
		}
	}
	m, err := a.loadMapping(false)
	if err != nil {
		return reevaluate.Summary{}, err
	}
	in, closeRedis, err := a.offlineIntake(ctx, m)
	if err != nil {
		return reevaluate.Summary{}, err
	}
	defer closeRedis()
	o := reevaluate.Options{Ledger: in.Ledger, Intake: in, Mapping: m, Rule: rule, Apply: apply, Out: out}
	if isTerminal(progress) {
		o.Progress = progress
	}
	return reevaluate.Run(ctx, o)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
