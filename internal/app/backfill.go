package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/backfill"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/reconcile"
	"github.com/badgebridge/bridge/internal/reevaluate"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/unmapped"
)

// Backfill feeds a file of historical certificates through the live intake (`bridge backfill`).
// Without apply it only prints what it would do and touches nothing. progress is drawn on only
// when it is a terminal.
func (a *App) Backfill(ctx context.Context, file string, apply bool, out, progress io.Writer) (backfill.Summary, error) {
	res, err := a.BackfillWith(ctx, file, BackfillOptions{Apply: apply, Out: out, Progress: progress})
	return res.Summary, err
}

// BackfillOptions are the flags of `bridge backfill`.
type BackfillOptions struct {
	Apply bool // --yes
	// Wait follows the queued rows until each is settled (--wait), at most Timeout (--timeout;
	// 0: no limit). It needs Apply.
	Wait    bool
	Timeout time.Duration
	// Out receives the report; Progress the progress bars, drawn only when it is a terminal.
	Out, Progress io.Writer
}

// BackfillResult is what a backfill did and, with Wait, what became of the rows it queued.
type BackfillResult struct {
	Summary backfill.Summary
	Settled *backfill.Settled // nil without Wait, or when the file could not be recorded
}

// BackfillWith runs `bridge backfill` with its flags.
func (a *App) BackfillWith(ctx context.Context, file string, bo BackfillOptions) (BackfillResult, error) {
	var res BackfillResult
	cfg := a.cfg
	if bo.Wait && !bo.Apply {
		return res, errors.New("--wait follows what --yes records: give both")
	}
	if err := cfg.RequireQueue(); err != nil {
		return res, err
	}
	if err := cfg.RequireBadgeHost(); err != nil {
		return res, err
	}
	m, err := a.loadMapping(false)
	if err != nil {
		return res, err
	}
	f, err := os.Open(file)
	if err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	defer f.Close()
	o := backfill.Options{Apply: bo.Apply, Mapping: m, Out: bo.Out}
	if isTerminal(bo.Progress) {
		o.Progress = bo.Progress
	}
	if !bo.Apply {
		res.Summary, err = backfill.Run(ctx, f, file, o)
		return res, err
	}
	in, closeRedis, err := a.offlineIntake(ctx, m)
	if err != nil {
		return res, err
	}
	defer closeRedis()
	o.Handler = in
	var rows []ledger.RowKey
	seen := map[string]bool{}
	if bo.Wait {
		o.Queued = func(keys []string) {
			for _, s := range keys {
				k, err := ledger.ParseRowKey(s)
				if err == nil && !seen[s] {
					seen[s] = true
					rows = append(rows, k)
				}
			}
		}
	}
	res.Summary, err = backfill.Run(ctx, f, file, o)
	if err != nil || !bo.Wait {
		return res, err
	}
	out := bo.Out
	if out == nil {
		out = io.Discard
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "nothing was queued: nothing to wait for")
		res.Settled = &backfill.Settled{}
		return res, nil
	}
	fmt.Fprintf(out, "waiting for the workers (bridge work or bridge run) to settle %d row(s)%s; Ctrl-C stops waiting, not the awarding\n",
		len(rows), a.expectedBulkTime(len(rows)))
	settled, err := backfill.Wait(ctx, backfill.WaitOptions{Ledger: in.Ledger, Rows: rows, Timeout: bo.Timeout, Out: bo.Out, Progress: o.Progress})
	res.Settled = &settled
	return res, err
}

// expectedBulkTime says how long the host's rate limit makes awarding n backfilled rows take at
// least: they go out in batch awards of 100 (bulk mode), plus the class listings, at
// BRIDGE_BADGR_RATE_LIMIT requests a second (docs/SCALING.md).
func (a *App) expectedBulkTime(n int) string {
	r := a.cfg.BadgrRateLimit
	if n == 0 || r <= 0 {
		return ""
	}
	batches := (n + reconcile.BatchSize - 1) / reconcile.BatchSize
	d := time.Duration(float64(batches) / float64(r) * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf(" (at %d requests/s: at least %s for %d batch award(s), plus the class listings)", r, max(d, time.Second), batches)
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
		// Unmapped course keys go to the list the services share (GET /v1/status). No hourly
		// warnings here: the run's own report counts its ignored lines (the dry run names
		// them), and log lines would cut through the progress bar.
		Unmapped: unmapped.New(unmapped.Options{Store: unmapped.NewStore(rdb, keyPrefix)}),
	}
	tctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.Unmapped.Run(tctx) // writes once more when stopped
	}()
	return in, func() {
		stop()
		<-done
		_ = rdb.Close()
	}, nil
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
