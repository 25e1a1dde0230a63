// Package reconcile makes the badge host match one ledger row: it takes the row's lock, looks
// the learner up on the host, awards, verifies, revokes duplicates and revocations, and writes
// the outcome back fenced by the lock, or parks the row with the host's reason. It holds no
// decision about what a learner should hold (rules does) and reaches the host only through
// badgehost.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/badgebridge/bridge/internal/backoff"
	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
)

// Scheduler queues another reconcile of a row (queue.Enqueuer): the reconciler asks for one
// when the row changed while it worked.
type Scheduler interface {
	Enqueue(ctx context.Context, k ledger.RowKey) error
}

// Reconciler makes the badge host match one ledger row.
type Reconciler struct {
	Ledger    *ledger.Ledger
	Host      badgehost.Host
	Scheduler Scheduler
	Log       *slog.Logger
	Settle    time.Duration // how long an unresolved award attempt is given (BRIDGE_SETTLE)
	Lease     time.Duration // row lock lease; above one host call
	MaxRetry  int
	Now       func() time.Time
	Metrics   *Metrics
	// Announce writes an outbox entry for every assertion created or revoked, in the same
	// step as the row (contract 9.4); off when no badge stream is configured.
	Announce bool

	batches batchRoutes // classes whose host refused batch awards
}

// Revocation reasons sent to the host.
const (
	ReasonNotHeld   = "Certificate revoked or course no longer passed in Open edX"
	ReasonDuplicate = "duplicate"
)

// retryPolicy spaces a row's retries after failures that count: 10 s doubling, capped at 6 h,
// ±20 %; with the default 12 retries they add up to about half a day.
var retryPolicy = backoff.Policy{Base: 10 * time.Second, Max: 6 * time.Hour, Low: 0.8, High: 1.2}

// Lease is the row lock lease for a host timeout: long enough for a job's worst case (list,
// award, list again, revoke duplicates), so that a job never outlives its lease while it works.
func Lease(hostTimeout time.Duration) time.Duration { return 4*hostTimeout + 30*time.Second }

// outcome is what one reconcile decided to write back.
type outcome struct {
	fields ledger.Fields
	next   time.Time // zero: nothing more to do by itself
}

// Reconcile takes the row's lock, reads it and makes the host match it. Any number of these,
// in any order, converge: they carry no decision, and only one holds a row at a time.
func (r *Reconciler) Reconcile(ctx context.Context, k ledger.RowKey) error {
	return r.Run(ctx, k, "")
}

// Run is Reconcile as the queued job id: the job empties the row's job slot as it takes the
// row's lock, before it reads the row, so a change recorded from then on queues a new job rather
// than counting on this one. An error leaves the row owed: the sweeper queues it again.
func (r *Reconciler) Run(ctx context.Context, k ledger.RowKey, jobID string) error {
	moved, err := r.reconcile(ctx, k, jobID)
	if err != nil {
		r.Metrics.reconciled("error")
		return err
	}
	if !moved {
		return nil
	}
	// Queued after the unlock: a job that found the row busy has emptied the slot by now (it
	// does so before it tries the lock), so this one is not skipped in favour of a job that
	// already gave up.
	if err := r.Scheduler.Enqueue(ctx, k); err != nil {
		r.log().Warn("queue follow-up reconcile failed; the sweeper will", "row", k.String(), "err", err)
	}
	return nil
}

// reconcile is one locked pass over the row; moved reports that the row changed meanwhile and
// is owed another pass.
func (r *Reconciler) reconcile(ctx context.Context, k ledger.RowKey, id string) (moved bool, err error) {
	var token string
	var ok bool
	if id != "" {
		token, ok, err = r.Ledger.StartJob(ctx, k, id, r.Lease)
	} else {
		token, ok, err = r.Ledger.Lock(ctx, k, r.Lease)
	}
	if err != nil {
		return false, err
	}
	if !ok {
		// The holder re-reads the version when it finishes and queues again if it moved.
		r.Metrics.reconciled("busy")
		return false, nil
	}
	defer func() {
		// A fresh context: the unlock must happen even when the job's context is done.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.Ledger.Unlock(uctx, k, token); err != nil {
			r.log().Warn("unlock failed; the lease will expire", "row", k.String(), "err", err)
		}
	}()
	row, err := r.Ledger.Read(ctx, k)
	if err != nil || row == nil {
		return false, err
	}
	now := r.now()
	if row.Version == row.SyncedVersion && (row.NextCheck.IsZero() || row.NextCheck.After(now)) {
		r.Metrics.reconciled("current")
		return false, nil // a duplicate job: an earlier one already did this version
	}
	ann := newAnnouncements(row, r.now, r.Announce)
	out, err := r.converge(ctx, row, token, now, ann)
	return r.complete(ctx, row, token, out, err, ann)
}

// complete writes a pass's outcome back, fenced by the lock, or, when the pass was cut short,
// writes nothing and only announces what the host already did. moved reports that the row
// changed meanwhile and is owed another pass.
func (r *Reconciler) complete(ctx context.Context, row *ledger.Row, token string, out outcome, err error, ann *announcements) (moved bool, _ error) {
	k := row.Key
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, ledger.ErrLockLost) || errors.Is(err, ledger.ErrRowGone) {
			// Shutdown, lost lease or erased row: write nothing; the owed mark brings the row
			// back if there is still work. What the host already did is still announced.
			r.log().Info("reconcile interrupted", "row", k.String(), "err", err)
			if !errors.Is(err, ledger.ErrRowGone) {
				r.salvage(ctx, ann)
			}
			return false, nil
		}
		r.salvage(ctx, ann)
		return false, err
	}
	moved, err = r.Ledger.Finish(ctx, k, token, row.Version, out.next, out.fields, ann.list...)
	if err != nil {
		if errors.Is(err, ledger.ErrLockLost) {
			r.salvage(ctx, ann)
			return false, nil
		}
		if errors.Is(err, ledger.ErrRowGone) {
			return false, nil
		}
		r.salvage(ctx, ann)
		return false, err
	}
	return moved, nil
}

func (r *Reconciler) converge(ctx context.Context, row *ledger.Row, token string, now time.Time, ann *announcements) (outcome, error) {
	k := row.Key
	held, timer := rules.Desired(row.Facts, rules.Micros(now))
	f := ledger.Fields{"desired": desiredName(held)}
	timerAt := time.Time{}
	if timer > 0 {
		timerAt = time.UnixMicro(timer)
	}

	// An award whose outcome is unknown (timeout, 5xx, crash) gets BRIDGE_SETTLE before the
	// host is asked again: Badgr may still commit it, and its duplicate check is not atomic.
	if !row.AttemptAt.IsZero() {
		settled := row.AttemptAt.Add(r.Settle)
		if now.Before(settled) {
			r.Metrics.reconciled("settling")
			return outcome{fields: f, next: settled}, nil
		}
	}
	emails := addresses(row)
	found, err := r.Host.Lookup(ctx, k.BadgeClass, emails)
	if err != nil {
		return r.failed(ctx, row, f, "list", err, now)
	}
	sortAssertions(found)

	if !held {
		revoked := 0
		for _, a := range found {
			if err := r.Ledger.Renew(ctx, k, token, r.Lease); err != nil {
				return outcome{}, err
			}
			if err := r.Host.Revoke(ctx, a.EntityID, ReasonNotHeld); err != nil {
				return r.failed(ctx, row, f, "revoke", err, now)
			}
			ann.revoked(a)
			revoked++
		}
		ann.notHeld(found)
		f["attempt_at"], f["retries"], f["reason"] = 0, 0, ""
		if revoked > 0 || row.State == ledger.StateIssued || row.State == ledger.StateRevoked {
			f["state"] = ledger.StateRevoked
		} else {
			f["state"] = ledger.StateNone
		}
		if revoked > 0 || row.State == ledger.StateIssued {
			// Earning the badge again later makes a new assertion: a new award generation.
			f["gen"] = row.Generation + 1
			r.log().Info("badge revoked", "row", k.String(), "user_id", k.UserID, "badge_class", k.BadgeClass, "assertions", revoked)
		}
		r.Metrics.reconciled("revoked")
		return outcome{fields: f, next: timerAt}, nil
	}

	if len(found) > 0 {
		return r.keep(ctx, row, token, f, found, timerAt, ann)
	}

	award, ok := rules.AwardFact(row.Facts, rules.Micros(now))
	if !ok {
		return outcome{fields: f, next: timerAt}, nil
	}
	req, stop, ok := r.awardRequest(row, award, f, now, timerAt)
	if !ok {
		if f["state"] == ledger.StateExpired {
			r.Metrics.reconciled("expired")
		}
		return stop, nil
	}

	// Record the attempt durably before the POST: if this worker dies mid-call, the next
	// reconcile knows an assertion may exist and waits BRIDGE_SETTLE before posting again.
	if err := r.Ledger.Renew(ctx, k, token, r.Lease); err != nil {
		return outcome{}, err
	}
	if err := r.Ledger.Step(ctx, k, token, ledger.Fields{"attempt_at": now, "state": ledger.StatePending}); err != nil {
		return outcome{}, err
	}
	ann.attempted = true
	a, err := r.Host.Award(ctx, k.BadgeClass, req)
	if err == nil && a.EntityID != "" && r.Ledger.Renew(ctx, k, token, r.Lease) == nil {
		// A clean 201 while this job still held the row: no other POST for the row can have
		// run meanwhile, so the assertion is the row's and needs neither a look-up nor a
		// verification (contract 5): two host requests per award.
		out, kerr := r.keep(ctx, row, token, f, []badgehost.Assertion{a}, timerAt, ann)
		if kerr == nil {
			r.log().Info("badge awarded", "row", k.String(), "user_id", k.UserID, "badge_class", k.BadgeClass, "entity_id", a.EntityID)
		}
		return out, kerr
	}
	switch {
	case err == nil, errors.Is(err, badgehost.ErrAlreadyAwarded):
		again, lerr := r.Host.Lookup(ctx, k.BadgeClass, emails)
		if lerr == nil {
			sortAssertions(again)
		}
		if lerr != nil || len(again) == 0 {
			if err != nil || a.EntityID == "" {
				// "Already exists" but not listed (yet): look again after settling.
				f["attempt_at"] = now
				return outcome{fields: f, next: now.Add(r.Settle)}, nil
			}
			again = []badgehost.Assertion{a}
		}
		out, kerr := r.keep(ctx, row, token, f, again, timerAt, ann)
		if kerr != nil {
			return out, kerr
		}
		// An outcome that was not a clean 201 within the lease ("already exists", or the lease
		// ran out during the POST) is verified once more after BRIDGE_SETTLE: a concurrent or
		// late-committed duplicate is revoked then.
		out.next = earliest(out.next, now.Add(r.Settle))
		r.log().Info("badge awarded", "row", k.String(), "user_id", k.UserID, "badge_class", k.BadgeClass, "entity_id", out.fields["entity_id"])
		return out, nil
	default:
		f["attempt_at"] = now
		return r.failed(ctx, row, f, "award", err, now)
	}
}

// awardRequest builds the award a held row is owed. When none is to be sent (no address known,
// or an award that would already be expired) ok is false and stop is the row's outcome.
func (r *Reconciler) awardRequest(row *ledger.Row, award rules.Fact, f ledger.Fields, now, timerAt time.Time) (req badgehost.AwardRequest, stop outcome, ok bool) {
	k := row.Key
	if row.Email == "" {
		f["state"], f["reason"] = ledger.StateFailed, "no e-mail address known for the learner"
		return req, outcome{fields: f}, false
	}
	// issuedOn is the event time capped at now; a minute's margin keeps a host whose clock is
	// behind ours from refusing it ("Only issuedOn dates in the past are acceptable").
	issuedOn := time.UnixMicro(award.First)
	if limit := now.Add(-time.Minute); award.First == 0 || issuedOn.After(limit) {
		issuedOn = limit
	}
	req = badgehost.AwardRequest{
		Email: row.Email, IssuedOn: issuedOn.UTC(), Narrative: award.Award.Narrative,
		EvidenceURL: award.Award.EvidenceURL, Notify: award.Award.Notify,
		IdempotencyKey: fmt.Sprintf("%s:%d:%d", k.BadgeClass, k.UserID, row.Generation),
	}
	if d := award.Award.ExpiresAfter; d > 0 {
		exp := issuedOn.Add(d).UTC()
		if !exp.After(now) {
			f["state"], f["reason"] = ledger.StateExpired, "the award would already be expired at "+exp.Format(time.RFC3339)
			return req, outcome{fields: f, next: timerAt}, false
		}
		req.Expires = &exp
	}
	return req, outcome{}, true
}

// keep records the earliest unrevoked assertion and revokes the others as duplicates.
func (r *Reconciler) keep(ctx context.Context, row *ledger.Row, token string, f ledger.Fields, found []badgehost.Assertion, next time.Time, ann *announcements) (outcome, error) {
	for _, dup := range found[1:] {
		if err := r.Ledger.Renew(ctx, row.Key, token, r.Lease); err != nil {
			return outcome{}, err
		}
		if err := r.Host.Revoke(ctx, dup.EntityID, ReasonDuplicate); err != nil {
			return r.failed(ctx, row, f, "revoke duplicate", err, r.now())
		}
		ann.duplicateRevoked(dup)
		r.Metrics.duplicateRevoked()
		r.log().Warn("duplicate assertion revoked", "row", row.Key.String(), "user_id", row.Key.UserID, "kept", found[0].EntityID, "revoked", dup.EntityID)
	}
	ann.kept(found[0])
	f["state"], f["entity_id"], f["open_badge_id"] = ledger.StateIssued, found[0].EntityID, found[0].OpenBadgeID
	f["attempt_at"], f["retries"], f["reason"] = 0, 0, ""
	r.Metrics.reconciled("issued")
	return outcome{fields: f, next: next}, nil
}

// failed turns a host error into the row's next step: wait without spending a retry (login
// backoff, 429), park at once (permanent 4xx), or retry with backoff until BRIDGE_MAX_RETRY.
func (r *Reconciler) failed(ctx context.Context, row *ledger.Row, f ledger.Fields, op string, err error, now time.Time) (outcome, error) {
	if ctx.Err() != nil {
		return outcome{}, ctx.Err()
	}
	k := row.Key
	var wait *badgehost.WaitError
	var permanent *badgehost.PermanentError
	switch {
	case errors.As(err, &wait):
		f["reason"] = wait.Reason
		r.Metrics.reconciled("waiting")
		return outcome{fields: f, next: latest(wait.Until, now).Add(backoff.Jitter(time.Second))}, nil
	case errors.As(err, &permanent):
		f["state"], f["reason"] = ledger.StateFailed, permanent.Reason
		if op == "award" {
			f["attempt_at"] = 0 // the host refused it: nothing was created
		}
		r.Metrics.reconciled("failed")
		r.log().Error("reconcile parked", "row", k.String(), "user_id", k.UserID, "badge_class", k.BadgeClass, "op", op, "err", err)
		return outcome{fields: f}, nil
	}
	n := row.Retries + 1
	f["retries"] = n
	if n > r.MaxRetry {
		f["state"], f["reason"] = ledger.StateFailed, fmt.Sprintf("%s: gave up after %d retries: %v", op, r.MaxRetry, err)
		r.Metrics.reconciled("failed")
		r.log().Error("reconcile parked after retries", "row", k.String(), "user_id", k.UserID, "op", op, "err", err)
		return outcome{fields: f}, nil
	}
	f["reason"] = fmt.Sprintf("%s: %v", op, err)
	next := now.Add(max(retryPolicy.Delay(n), badgehost.RetryAfter(err)))
	if op == "award" {
		// An unresolved attempt is looked at again no sooner than it settles.
		next = latest(next, now.Add(r.Settle))
	}
	r.Metrics.reconciled("retry")
	r.log().Warn("reconcile will retry", "row", k.String(), "user_id", k.UserID, "op", op, "retry", n, "at", next.UTC().Format(time.RFC3339), "err", err)
	return outcome{fields: f, next: next}, nil
}

// sortAssertions orders by createdAt, then entityId: the first is the one to keep.
func sortAssertions(a []badgehost.Assertion) {
	sort.SliceStable(a, func(i, j int) bool {
		if !a[i].CreatedAt.Equal(a[j].CreatedAt) {
			return a[i].CreatedAt.Before(a[j].CreatedAt)
		}
		return a[i].EntityID < a[j].EntityID
	})
}

func desiredName(held bool) string {
	if held {
		return "held"
	}
	return "not held"
}

// addresses are every address of the row's learner to look up: those recorded, and the current
// one.
func addresses(row *ledger.Row) []string {
	emails := row.Emails
	if row.Email != "" && !contains(emails, row.Email) {
		emails = append(emails, row.Email)
	}
	return emails
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}
