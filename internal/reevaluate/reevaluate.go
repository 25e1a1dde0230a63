// Package reevaluate applies the current mapping to every learner the bridge has a record of
// (`bridge reevaluate`, contract 9.5), through the same intake as live events, in bounded batches
// so that it can run while the bridge serves.
package reevaluate

import (
	"context"
	"fmt"
	"io"

	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/progressbar"
	"github.com/badgebridge/bridge/internal/rules"
)

// Batch is how many learners one scan step reads.
const Batch = 200

// Options say what to reevaluate and where to report.
type Options struct {
	Ledger  *ledger.Ledger
	Intake  *intake.Intake
	Mapping *rules.Mapping
	Rule    string // only this rule; "" for every rule
	Apply   bool   // without it nothing is written: the report says what would change
	Out     io.Writer
	// Progress receives a one-line progress bar (a terminal's stderr), nil for none.
	Progress io.Writer
}

// Summary counts what a run did.
type Summary struct {
	Learners int // learners with a record
	Changed  int // learners with at least one row owed
	Rows     int // rows owed a reconcile (awards or revocations to make)
	Erased   int // erased learners skipped
}

// Run reevaluates every learner and prints a line per learner with a change, then a summary.
func Run(ctx context.Context, o Options) (Summary, error) {
	m := o.Mapping
	if o.Rule != "" {
		only, ok := m.Only(o.Rule)
		if !ok {
			return Summary{}, fmt.Errorf("--rule %q: no rule of that name in the mapping", o.Rule)
		}
		m = only
	}
	var bar *progressbar.Bar
	if o.Progress != nil {
		bar = &progressbar.Bar{W: o.Progress, Unit: "learners"}
	}
	var sum Summary
	seen := map[int64]bool{} // SCAN may return a key twice
	var cursor uint64
	for {
		uids, next, err := o.Ledger.Learners(ctx, cursor, Batch)
		if err != nil {
			return sum, err
		}
		for _, uid := range uids {
			if seen[uid] {
				continue
			}
			seen[uid] = true
			if err := reevaluate(ctx, o, m, uid, &sum, bar); err != nil {
				bar.Finish(sum.Learners)
				return sum, err
			}
			bar.Update(sum.Learners)
		}
		if cursor = next; cursor == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return sum, err
		}
	}
	bar.Finish(sum.Learners)
	verb := "owed a reconcile"
	if !o.Apply {
		verb = "would be owed a reconcile (dry run: run again with --yes to apply)"
	}
	fmt.Fprintf(o.Out, "%d learner(s) reevaluated, %d changed: %d row(s) %s; %d erased learner(s) skipped\n",
		sum.Learners, sum.Changed, sum.Rows, verb, sum.Erased)
	return sum, nil
}

func reevaluate(ctx context.Context, o Options, m *rules.Mapping, uid int64, sum *Summary, bar *progressbar.Bar) error {
	lr, err := o.Ledger.Learner(ctx, uid)
	if err != nil {
		return err
	}
	if len(lr.Record) == 0 {
		return nil // erased since the scan saw it
	}
	sum.Learners++
	res, err := o.Intake.Reevaluate(ctx, uid, lr, m, o.Apply)
	if err != nil {
		return err
	}
	if res.Erased {
		sum.Erased++
		return nil
	}
	if len(res.Rows) == 0 {
		return nil
	}
	sum.Changed++
	sum.Rows += len(res.Rows)
	bar.Clear() // the report's lines go to the same terminal
	verb := "owed"
	if !o.Apply {
		verb = "would be owed"
	}
	for _, k := range res.Rows {
		fmt.Fprintf(o.Out, "user %d: badge class %s %s a reconcile\n", uid, k.BadgeClass, verb)
	}
	return nil
}
