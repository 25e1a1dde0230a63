package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/progressbar"
)

// RowReader reads ledger rows: *ledger.Ledger.
type RowReader interface {
	ReadMany(ctx context.Context, keys []ledger.RowKey) ([]*ledger.Row, error)
}

// WaitOptions configure Wait.
type WaitOptions struct {
	Ledger RowReader
	// Rows are the rows the backfill queued (intake.Result.Jobs of its accepted events).
	Rows []ledger.RowKey
	// Timeout ends the wait with the rows still pending counted as such; 0 waits until every
	// row is settled or ctx ends.
	Timeout time.Duration
	// Out receives the summary; nil discards it.
	Out io.Writer
	// Progress receives a progress bar; only a terminal should be passed (see Options).
	Progress io.Writer
	// Poll is the least time between two reads of the pending rows (default 2s). A read that
	// takes long (many rows) stretches it to twice its own duration, so that waiting never
	// keeps the queue Redis more than half busy.
	Poll time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Settled counts what became of the rows a backfill queued.
type Settled struct {
	Rows    int
	Issued  int // the learner holds the badge (awarded now, or found on the host)
	Revoked int
	Failed  int // parked with the host's reason: GET /v1/failures
	// Unchanged rows needed nothing sent: not held, an award that would already be expired, or
	// a row erased meanwhile.
	Unchanged int
	// Pending rows were not settled when the wait ended (timeout or interrupt).
	Pending int
	Waited  time.Duration
}

// Done reports whether every row settled and none failed.
func (s Settled) Done() bool { return s.Pending == 0 && s.Failed == 0 }

// readBatch is how many rows one ReadMany reads (one round trip).
const readBatch = 500

// Row outcomes.
const (
	rowPending   = ""
	rowIssued    = "issued"
	rowRevoked   = "revoked"
	rowFailed    = "failed"
	rowUnchanged = "unchanged"
)

// classify says what became of a row whose version was v0 when the wait began. A row is settled
// once a reconcile that saw at least v0 finished with nothing left unresolved: no award whose
// outcome is unknown (attempt_at), no retry or host wait under way (a reason on a row that is not
// parked). A verification scheduled after an uncertain award does not keep it pending: the
// learner holds the badge; the verification only revokes extra copies.
func classify(r *ledger.Row, v0 int64) string {
	switch {
	case r == nil:
		return rowUnchanged // erased meanwhile (DELETE /v1/learners)
	case r.SyncedVersion < v0:
		return rowPending
	case r.State == ledger.StateFailed:
		return rowFailed
	case !r.AttemptAt.IsZero():
		return rowPending
	case r.State == ledger.StateExpired, r.State == ledger.StateNone:
		return rowUnchanged
	case r.Reason != "":
		return rowPending // retrying, or waiting for the host (login block, 429)
	case r.State == ledger.StateIssued:
		return rowIssued
	case r.State == ledger.StateRevoked:
		return rowRevoked
	}
	return rowUnchanged
}

type waiting struct {
	key ledger.RowKey
	v0  int64
}

// Wait follows the rows a backfill queued until each is settled (issued, revoked, failed or
// unchanged), the timeout passes or ctx ends, drawing a progress bar, and prints a summary. It
// only reads the ledger: the workers (`bridge work` or `bridge run`) do the awarding. An error
// means the ledger could not be read or ctx ended; the summary so far is returned with it.
func Wait(ctx context.Context, o WaitOptions) (Settled, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	start := o.Now()
	sum := Settled{Rows: len(o.Rows)}
	var bar *progressbar.Bar
	if o.Progress != nil {
		bar = &progressbar.Bar{W: o.Progress, Total: len(o.Rows), Unit: "rows settled"}
	}
	pending := make([]waiting, 0, len(o.Rows))
	for _, k := range o.Rows {
		pending = append(pending, waiting{key: k, v0: -1})
	}
	var deadline time.Time
	if o.Timeout > 0 {
		deadline = start.Add(o.Timeout)
	}
	var err error
	for {
		began := o.Now()
		pending, err = sum.pass(ctx, o.Ledger, pending)
		if err != nil {
			break
		}
		bar.Update(sum.Rows - len(pending))
		if len(pending) == 0 {
			break
		}
		now := o.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		pause := max(o.Poll, 2*now.Sub(began))
		if !deadline.IsZero() {
			pause = min(pause, deadline.Sub(now))
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(pause):
		}
		if err != nil {
			break
		}
	}
	sum.Pending = len(pending)
	sum.Waited = o.Now().Sub(start)
	bar.Finish(sum.Rows - sum.Pending)
	fmt.Fprintln(o.Out, sum.report(o.Timeout, err))
	return sum, err
}

// pass reads the pending rows, counts those settled and returns the others. On the first pass
// (v0 < 0) it records each row's version.
func (s *Settled) pass(ctx context.Context, l RowReader, pending []waiting) ([]waiting, error) {
	left := pending[:0]
	for i := 0; i < len(pending); i += readBatch {
		batch := pending[i:min(i+readBatch, len(pending))]
		keys := make([]ledger.RowKey, len(batch))
		for j, w := range batch {
			keys[j] = w.key
		}
		rows, err := l.ReadMany(ctx, keys)
		if err != nil {
			// Keep the unread rows pending, so the counts still add up.
			left = append(left, pending[i:]...)
			return left, fmt.Errorf("read the backfilled rows: %w", err)
		}
		for j, w := range batch {
			r := rows[j]
			if w.v0 < 0 {
				w.v0 = 0
				if r != nil {
					w.v0 = r.Version
				}
			}
			switch classify(r, w.v0) {
			case rowPending:
				left = append(left, w)
			case rowIssued:
				s.Issued++
			case rowRevoked:
				s.Revoked++
			case rowFailed:
				s.Failed++
			default:
				s.Unchanged++
			}
		}
	}
	return left, nil
}

func (s Settled) report(timeout time.Duration, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "after %s: %s: %d issued", s.Waited.Round(time.Second), plural(s.Rows, "row"), s.Issued)
	if s.Revoked > 0 {
		fmt.Fprintf(&b, ", %d revoked", s.Revoked)
	}
	fmt.Fprintf(&b, ", %d failed", s.Failed)
	if s.Failed > 0 {
		b.WriteString(" (the host's reasons: GET /v1/failures; retry: POST /v1/failures/retry)")
	}
	fmt.Fprintf(&b, ", %d unchanged", s.Unchanged)
	if s.Pending > 0 {
		fmt.Fprintf(&b, ", %d still pending", s.Pending)
		switch {
		case errors.Is(err, context.Canceled):
			b.WriteString(" when the wait was interrupted")
		case err != nil:
			fmt.Fprintf(&b, " when the wait stopped (%v)", err)
		case timeout > 0:
			fmt.Fprintf(&b, " after --timeout %s", timeout)
		}
		b.WriteString(": the workers go on with them (GET /v1/awards?state=pending)")
	}
	return b.String()
}
