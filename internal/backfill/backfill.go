// Package backfill awards badges to learners who earned certificates before the bridge existed,
// or whose events the bridge never saw (an event-bus stream trimmed while it was down), for
// `bridge backfill` (CONTRACT section 2).
//
// It does not award anything itself: every historical event goes through the same intake as a
// live event, so the ledger's rules (newest fact wins, revocations win ties), event-level
// de-duplication and the workers apply unchanged, and running the same file twice is harmless.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/progressbar"
	"github.com/badgebridge/bridge/internal/rules"
)

// Via is what the intake records as the path an event took (ledger.EventRecord.Via).
const Via = "backfill"

// DryRunNote ends the report of a dry run. Self-hosted Badgr sends its own "you earned a badge"
// e-mail to every first-time recipient whatever notify asks, so an operator must know that
// confirming a backfill may e-mail thousands of former learners at once.
const DryRunNote = "Dry run: nothing was recorded. Run again with --yes to award. " +
	"Self-hosted Badgr e-mails every first-time recipient, whatever notify says."

// Handler records one event: *intake.Intake in production.
type Handler interface {
	Handle(ctx context.Context, ev edx.Event, via string) (intake.Result, error)
}

// Options configure a Run.
type Options struct {
	// Apply records the events (--yes). Without it the run is a dry run: it prints what each
	// line would do according to Mapping and changes nothing.
	Apply bool
	// Mapping decides the dry run's verdicts; nil maps nothing. The intake uses its own.
	Mapping *rules.Mapping
	// Handler is the live intake. It is required with Apply and never called in a dry run.
	Handler Handler
	// Out receives the report (stdout); nil discards it.
	Out io.Writer
	// Progress receives a one-line progress bar (stderr). The caller passes it only when it is
	// a terminal: the bar is redrawn in place with carriage returns, which garbles a log file.
	Progress io.Writer
	// Queued, when set, is given the rows each accepted event queued a reconcile for
	// (intake.Result.Jobs, "<badge class>:<user id>"), for `bridge backfill --wait` (Wait).
	Queued func(rows []string)
	// Now is the clock; nil means time.Now. It stands in for a missing event time in JSON
	// Lines (as the receive time does for a live webhook) and bounds CSV issue dates.
	Now func() time.Time
}

// Summary counts what a run did. Lines counts records (non-empty lines, without the CSV
// header); each is either Invalid or one of Events. In a run with Apply, every event is
// counted once more by its intake status: Accepted, Unchanged, Duplicate or Ignored (which
// includes event types the bridge does not handle). A dry run cannot know the ledger's state,
// so it counts only Ignored: unsupported types and events that no rule maps.
type Summary struct {
	Lines, Events, Accepted, Unchanged, Duplicate, Ignored, Invalid int
}

// Run reads a backfill file and, with o.Apply, hands each valid event to o.Handler in file
// order. name prefixes the line numbers in the report (the file name, as the operator gave it).
//
// The format is told by the first non-empty line: a line starting with "{" begins JSON Lines
// (one webhook body per line, any shape the webhook accepts as application/json); anything else
// must be the CSV header user_id,email,course_key,mode,issued_on[,name][,grade] (any order). Every line
// is validated; a bad one is reported as "<name>:<line>: <problem>", counted as Invalid and
// skipped, without stopping the run. The problem never repeats an e-mail address.
//
// Run returns an error, with the Summary so far, for a file it cannot read as either format
// (nothing is processed then), for a read error, when ctx ends, and when the handler fails
// (the queue Redis is down): the run stops at that line, because every later line would fail
// too, and the error says that running the same file again is safe.
func Run(ctx context.Context, r io.Reader, name string, o Options) (Summary, error) {
	if o.Apply && o.Handler == nil {
		return Summary{}, errors.New("backfill: no handler to record events with")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var bar *progressbar.Bar
	if o.Progress != nil {
		// Count before reading: counting afterwards is useless, and a pipe cannot be rewound.
		total, err := countLines(r)
		if err != nil {
			return Summary{}, fmt.Errorf("%s: rewind after counting lines: %w", name, err)
		}
		bar = &progressbar.Bar{W: o.Progress, Total: total, Unit: "lines"}
	}
	src, err := open(r, name, o.Now)
	if err != nil {
		return Summary{}, err
	}
	rn := &runner{o: o, name: name, src: src, bar: bar}
	err = rn.run(ctx)
	if err == nil {
		bar.Finish(-1) // the whole file was read, trailing blank lines included
	} else {
		bar.Finish(src.position())
	}
	rn.report()
	return rn.sum, err
}

// runner carries one Run.
type runner struct {
	o    Options
	name string
	src  source
	bar  *progressbar.Bar
	sum  Summary
	// mapped counts, in a dry run, the events some rule would make held or not held. The
	// Summary has no field for it because an applied run counts intake statuses instead.
	mapped int
}

func (rn *runner) run(ctx context.Context) error {
	last := 0 // the last line handled, for the error when ctx ends
	for {
		if err := ctx.Err(); err != nil {
			if !rn.o.Apply {
				return fmt.Errorf("%s: stopped after line %d: %w", rn.name, last, err)
			}
			return fmt.Errorf("%s: stopped after line %d: %w; %s", rn.name, last, err, resendSafe)
		}
		it, err := rn.src.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: read after line %d: %w", rn.name, last, err)
		}
		last = it.line
		if err := rn.handle(ctx, it); err != nil {
			return err
		}
		rn.bar.Update(rn.src.position())
	}
}

// handle counts and reports one record and, with Apply, records its event.
func (rn *runner) handle(ctx context.Context, it item) error {
	rn.sum.Lines++
	switch {
	case it.err != nil:
		rn.sum.Invalid++
		rn.printf("%s:%d: %v\n", rn.name, it.line, it.err)
		return nil
	case it.unsupported != nil:
		rn.sum.Events++
		rn.sum.Ignored++
		if !rn.o.Apply {
			rn.printf("line %d: ignored: %v\n", it.line, it.unsupported)
		}
		return nil
	}
	rn.sum.Events++
	if !rn.o.Apply {
		rn.verdict(it.line, it.ev)
		return nil
	}
	return rn.apply(ctx, it.line, it.ev)
}

// resendSafe tells the operator what a stopped run leaves behind (CONTRACT 4.1, 503): every
// intake step is idempotent and the event id is stored last, so lines already recorded come
// back as duplicate, and a half-recorded line is completed.
const resendSafe = "the lines before it are recorded, and running the same file again is safe: " +
	"recorded lines come back as duplicate"

func (rn *runner) apply(ctx context.Context, line int, ev edx.Event) error {
	res, err := rn.o.Handler.Handle(ctx, ev, Via)
	if err != nil {
		return fmt.Errorf("%s:%d: recording the event failed, so the backfill stopped: %w; %s",
			rn.name, line, err, resendSafe)
	}
	switch res.Status {
	case intake.StatusAccepted:
		rn.sum.Accepted++
		if rn.o.Queued != nil && len(res.Jobs) > 0 {
			rn.o.Queued(res.Jobs)
		}
	case intake.StatusUnchanged:
		rn.sum.Unchanged++
	case intake.StatusDuplicate:
		rn.sum.Duplicate++
	case intake.StatusIgnored:
		rn.sum.Ignored++
	default:
		// Not reachable with the real intake; stopping beats a summary that does not add up.
		return fmt.Errorf("%s:%d: the intake answered with unknown status %q", rn.name, line, res.Status)
	}
	return nil
}

// verdict prints what the intake would make of ev, using the intake's own rule selection
// (rules.Mapping.Change) so the dry run cannot drift from what --yes does. It cannot know what the
// ledger already holds, so it says "would hold", not "would award".
func (rn *runner) verdict(line int, ev edx.Event) {
	prefix := fmt.Sprintf("line %d: user %d, %s: ", line, ev.UserID, ev.Course.Raw)
	sig := ev.Signal()
	if sig == edx.SignalNone {
		rn.sum.Ignored++
		rn.printf("%signored: certificate status %s neither awards nor revokes\n", prefix, quote(ev.Status))
		return
	}
	// Award-text warnings are the applied run's to log, through the intake.
	change, _ := rn.o.Mapping.Change(ev, false)
	updates := change.Updates
	if len(updates) == 0 {
		rn.sum.Ignored++
		rn.printf("%sno badge mapped\n", prefix)
		return
	}
	rn.mapped++
	verb := "would hold"
	if sig != edx.SignalSupports {
		verb = "would not hold"
	}
	// Rules may share a badge class: name each class once, with every rule behind it.
	var classes []string
	byClass := map[string][]string{}
	for _, u := range updates {
		if _, ok := byClass[u.BadgeClass]; !ok {
			classes = append(classes, u.BadgeClass)
		}
		rule := u.Rule
		if sig == edx.SignalFailing && u.RevokeAfter > 0 {
			rule += fmt.Sprintf(", once not passing for %s", u.RevokeAfter)
		}
		byClass[u.BadgeClass] = append(byClass[u.BadgeClass], rule)
	}
	parts := make([]string, len(classes))
	for i, c := range classes {
		parts[i] = c + " (" + strings.Join(byClass[c], "; ") + ")"
	}
	rn.printf("%s%s %s\n", prefix, verb, strings.Join(parts, ", "))
}

// report prints the summary, and after a dry run the note about what --yes would set off.
func (rn *runner) report() {
	s := rn.sum
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s, %s", rn.name, plural(s.Lines, "line"), plural(s.Events, "event"))
	if rn.o.Apply {
		fmt.Fprintf(&b, ": %d accepted, %d unchanged, %d duplicate, %d ignored",
			s.Accepted, s.Unchanged, s.Duplicate, s.Ignored)
	} else {
		fmt.Fprintf(&b, ": %d with a mapped badge, %d ignored", rn.mapped, s.Ignored)
	}
	fmt.Fprintf(&b, "; %s skipped", plural(s.Invalid, "invalid line"))
	rn.printf("%s\n", b.String())
	if !rn.o.Apply {
		rn.printf("\n%s\n", DryRunNote)
	}
}

// printf writes to the report. The progress bar usually shares the terminal (stderr next to
// stdout), so it is wiped first and drawn again below the new line: report lines scroll above
// it instead of being glued to it.
func (rn *runner) printf(format string, args ...any) {
	shown := rn.bar.Clear()
	// A report that cannot be written (stdout closed) must not stop recording: the summary's
	// counts are returned to the caller anyway.
	_, _ = fmt.Fprintf(rn.o.Out, format, args...)
	if shown {
		rn.bar.Draw()
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
