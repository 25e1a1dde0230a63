package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
)

// BatchSize is how many awards go in one batch award. Badgr documents no limit, but each item is
// a full award (hash, salt, image bake, notification), so batches stay moderate; the sandbox
// accepts 100.
const BatchSize = 100

// BulkRunLimit bounds a bulk run whose context has no deadline (the queue gives every run one).
const BulkRunLimit = 5 * time.Minute

// Requests per page of a class listing and per recipient look-up (badgr's page and look-up
// batch sizes): a run lists the whole class only when that costs fewer requests than looking
// the waiting learners up.
const (
	listingPerRequest = 500
	lookupPerRequest  = 20
)

// batchRoutes remembers the badge classes whose host answered a batch award with 404 or 405:
// those are awarded one by one from then on (until the process restarts).
type batchRoutes struct {
	mu     sync.Mutex
	absent map[string]bool
}

func (b *batchRoutes) missing(class string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.absent[class]
}

func (b *batchRoutes) setMissing(class string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.absent == nil {
		b.absent = map[string]bool{}
	}
	b.absent[class] = true
}

// RunBulk reconciles the rows of one badge class waiting in its bulk set (many awards due at
// once: a backfill, a re-evaluation, a burst the sweeper found) in batches of BatchSize: the
// learners are looked up together (one class listing for the whole run, or recipient look-ups per
// batch, whichever costs fewer requests), every owed award is recorded as an attempt on its row,
// and the batch goes to the host in one batch award whose results are matched to rows by
// recipient. Rows that need more than an award (revocations, unresolved attempts, duplicates to
// look at) take the single path. A host without batch awards gets single awards.
func (r *Reconciler) RunBulk(ctx context.Context, badgeClass string) error {
	token, ok, err := r.Ledger.StartBulkRun(ctx, badgeClass, r.Lease)
	if err != nil {
		return err
	}
	if !ok {
		// Another run of the class works: it takes the rows waiting, and the sweeper queues a
		// run for any left when it ends.
		return nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.Ledger.EndBulkRun(uctx, badgeClass, token); err != nil {
			r.log().Warn("ending a bulk run failed; its lease will expire", "badge_class", badgeClass, "err", err)
		}
	}()
	host, ok := r.Host.(badgehost.Bulk)
	run := &bulkRun{r: r, host: host, class: badgeClass, token: token}
	// No batch is started that could outlast the run's deadline: a batch holds its rows' locks,
	// which last a lease at most.
	deadline := r.now().Add(BulkRunLimit)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(-r.Lease)
	}
	for ctx.Err() == nil && r.now().Before(deadline) {
		// A batch lasts a row lease at most: the run's lease, renewed before each, outlives it.
		if err := run.renew(ctx)(); err != nil {
			return err
		}
		keys, err := r.Ledger.TakeBulk(ctx, badgeClass, BatchSize)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if !ok || r.batches.missing(badgeClass) {
			// One by one, each up to a lease: the run's lease is renewed before each row.
			if err := r.runEach(ctx, keys, run.renew(ctx)); err != nil {
				return err
			}
			continue
		}
		if err := run.batch(ctx, keys); err != nil {
			return err
		}
	}
	return nil
}

// runEach takes the single path for each row, calling renew (when not nil) before each; a row
// it could not do stays owed.
func (r *Reconciler) runEach(ctx context.Context, keys []ledger.RowKey, renew func() error) error {
	for _, k := range keys {
		if ctx.Err() != nil {
			return nil
		}
		if renew != nil {
			if err := renew(); err != nil {
				return err
			}
		}
		if err := r.Run(ctx, k, ""); err != nil {
			r.log().Warn("reconcile failed; the sweeper will queue the row again", "row", k.String(), "err", err)
		}
	}
	return nil
}

// bulkRun is one bulk run of a badge class.
type bulkRun struct {
	r     *Reconciler
	host  badgehost.Bulk
	class string
	token string // of the run's lease

	decided bool // whether to list the class has been decided
	listing map[string][]badgehost.Assertion
}

// renew returns what extends the run's lease; it fails once another run holds it.
func (b *bulkRun) renew(ctx context.Context) func() error {
	return func() error { return b.r.Ledger.RenewBulkRun(ctx, b.class, b.token, b.r.Lease) }
}

// candidate is a locked row of a batch that is owed an award.
type candidate struct {
	row     *ledger.Row
	token   string
	f       ledger.Fields
	timerAt time.Time
	req     badgehost.AwardRequest
	emails  []string
	ann     *announcements
	out     outcome
	err     error
	done    bool // out/err hold the row's outcome
}

func (c *candidate) finish(out outcome, err error) {
	c.out, c.err, c.done = out, err, true
}

// batch reconciles one batch of rows taken from the bulk set.
func (b *bulkRun) batch(ctx context.Context, keys []ledger.RowKey) error {
	r := b.r
	if err := b.decide(ctx, len(keys)); err != nil {
		return err
	}
	tokens := map[ledger.RowKey]string{}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for k, token := range tokens {
			if err := r.Ledger.Unlock(uctx, k, token); err != nil {
				r.log().Warn("unlock failed; the lease will expire", "row", k.String(), "err", err)
			}
		}
	}()
	var locked []ledger.RowKey
	for _, k := range keys {
		token, ok, err := r.Ledger.Lock(ctx, k, r.Lease)
		if err != nil {
			return err
		}
		if !ok {
			// A job works on the row; it re-reads the version when it finishes.
			r.Metrics.reconciled("busy")
			continue
		}
		tokens[k] = token
		locked = append(locked, k)
	}
	rows, err := r.Ledger.ReadMany(ctx, locked)
	if err != nil {
		return err
	}

	now := r.now()
	var single []ledger.RowKey
	var cands []*candidate
	inBatch := map[string]bool{}
	for i, row := range rows {
		if row == nil {
			continue
		}
		if row.Version == row.SyncedVersion && (row.NextCheck.IsZero() || row.NextCheck.After(now)) {
			r.Metrics.reconciled("current")
			continue
		}
		c, ok := b.plan(row, tokens[locked[i]], now)
		if !ok || inBatch[c.req.Email] {
			single = append(single, row.Key)
			continue
		}
		inBatch[c.req.Email] = true
		cands = append(cands, c)
	}
	// The single path takes its own lock.
	for _, k := range single {
		if err := r.Ledger.Unlock(ctx, k, tokens[k]); err == nil {
			delete(tokens, k)
		}
	}

	b.lookUp(ctx, cands, now)
	b.award(ctx, cands, now)

	var moved []ledger.RowKey
	for _, c := range cands {
		if !c.done {
			continue
		}
		m, err := r.complete(ctx, c.row, c.token, c.out, c.err, c.ann)
		if err != nil {
			r.log().Warn("reconcile failed; the sweeper will queue the row again", "row", c.row.Key.String(), "err", err)
		}
		if m {
			moved = append(moved, c.row.Key)
		}
	}
	for k, token := range tokens {
		if err := r.Ledger.Unlock(ctx, k, token); err != nil {
			r.log().Warn("unlock failed; the lease will expire", "row", k.String(), "err", err)
		}
		delete(tokens, k)
	}
	// After the unlock, as in Run: a job queued before it could find the row busy and give up.
	for _, k := range moved {
		if err := r.Scheduler.Enqueue(ctx, k); err != nil {
			r.log().Warn("queue follow-up reconcile failed; the sweeper will", "row", k.String(), "err", err)
		}
	}
	return r.runEach(ctx, single, b.renew(ctx))
}

// decide chooses, once per run, between one listing of the whole class and recipient look-ups
// per batch: listing costs about one request per listingPerRequest rows of the class, look-ups
// one per lookupPerRequest learners waiting.
func (b *bulkRun) decide(ctx context.Context, taken int) error {
	if b.decided {
		return nil
	}
	b.decided = true
	r := b.r
	waiting, err := r.Ledger.BulkWaiting(ctx, b.class)
	if err != nil {
		return err
	}
	waiting += int64(taken)
	rows, err := r.Ledger.ClassRows(ctx, b.class)
	if err != nil {
		return err
	}
	if rows/listingPerRequest+1 > (waiting+lookupPerRequest-1)/lookupPerRequest {
		return nil
	}
	all, err := b.host.ListClass(ctx, b.class)
	if err != nil {
		// Not fatal: each batch looks its learners up instead, and a failure there takes the
		// rows' own retry path.
		r.log().Warn("class listing failed; looking learners up per batch", "badge_class", b.class, "err", err)
		return nil
	}
	b.listing = indexByRecipient(all)
	r.log().Info("class listed for a bulk run", "badge_class", b.class, "assertions", len(all), "waiting", waiting)
	return nil
}

// indexByRecipient keeps, per recipient, what a row needs of its assertions.
func indexByRecipient(all []badgehost.Assertion) map[string][]badgehost.Assertion {
	out := make(map[string][]badgehost.Assertion, len(all))
	for _, a := range all {
		if a.Revoked || a.Recipient == "" {
			continue
		}
		out[a.Recipient] = append(out[a.Recipient], badgehost.Assertion{
			EntityID: a.EntityID, OpenBadgeID: a.OpenBadgeID, BadgeClass: a.BadgeClass,
			Recipient: a.Recipient, CreatedAt: a.CreatedAt,
		})
	}
	return out
}

// plan makes a row a candidate for the batch, or says it takes the single path: a row that
// should not hold the badge, one already awarded, an unresolved award attempt, nothing to award,
// or no award to send.
func (b *bulkRun) plan(row *ledger.Row, token string, now time.Time) (*candidate, bool) {
	r := b.r
	held, timer := rules.Desired(row.Facts, rules.Micros(now))
	if !held {
		return nil, false
	}
	if row.EntityID != "" && row.State == ledger.StateIssued {
		// Already awarded: what the row needs is its own look-up (a new fact on an issued row),
		// not a batch's, whose listing may predate the award.
		return nil, false
	}
	if !row.AttemptAt.IsZero() {
		// An unresolved attempt (a batch that timed out or was cut short, an item the host left
		// out of its answer) is settled by the row's own look-up: one batch item refused while
		// saving would otherwise fail every batch it went in.
		return nil, false
	}
	award, ok := rules.AwardFact(row.Facts, rules.Micros(now))
	if !ok {
		return nil, false
	}
	c := &candidate{row: row, token: token, f: ledger.Fields{"desired": desiredName(true)}}
	if timer > 0 {
		c.timerAt = time.UnixMicro(timer)
	}
	req, _, ok := r.awardRequest(row, award, ledger.Fields{}, now, c.timerAt)
	if !ok {
		return nil, false
	}
	req.Email = strings.ToLower(strings.TrimSpace(req.Email))
	c.req = req
	c.emails = addresses(row)
	c.ann = newAnnouncements(row, r.now, r.Announce)
	return c, true
}

// lookUp finds the candidates' assertions, from the run's listing or by one look-up of all their
// addresses, and settles those that hold one already.
func (b *bulkRun) lookUp(ctx context.Context, cands []*candidate, now time.Time) {
	r := b.r
	found := b.listing
	if found == nil && len(cands) > 0 {
		var emails []string
		for _, c := range cands {
			emails = append(emails, c.emails...)
		}
		got, err := r.Host.Lookup(ctx, b.class, emails)
		if err != nil {
			for _, c := range cands {
				c.finish(r.failed(ctx, c.row, c.f, "list", err, now))
			}
			return
		}
		found = indexByRecipient(got)
	}
	for _, c := range cands {
		var held []badgehost.Assertion
		seen := map[string]bool{}
		for _, e := range c.emails {
			for _, a := range found[strings.ToLower(strings.TrimSpace(e))] {
				if !seen[a.EntityID] {
					seen[a.EntityID] = true
					held = append(held, a)
				}
			}
		}
		if len(held) > 0 {
			sortAssertions(held)
			c.finish(r.keep(ctx, c.row, c.token, c.f, held, c.timerAt, c.ann))
		}
	}
}

// award records an attempt on every candidate still owed, sends them in one batch award and
// settles each row from its own result.
func (b *bulkRun) award(ctx context.Context, cands []*candidate, now time.Time) {
	r := b.r
	var sent []*candidate
	for _, c := range cands {
		if c.done {
			continue
		}
		// Recorded durably before the POST, as for a single award.
		if err := r.Ledger.Renew(ctx, c.row.Key, c.token, r.Lease); err != nil {
			c.finish(outcome{}, err)
			continue
		}
		if err := r.Ledger.Step(ctx, c.row.Key, c.token, ledger.Fields{"attempt_at": now, "state": ledger.StatePending}); err != nil {
			c.finish(outcome{}, err)
			continue
		}
		c.ann.attempted = true
		sent = append(sent, c)
	}
	if len(sent) == 0 {
		return
	}
	reqs := make([]badgehost.AwardRequest, len(sent))
	for i, c := range sent {
		reqs[i] = c.req
	}
	results, err := b.host.AwardBatch(ctx, b.class, reqs)
	r.Metrics.batch(len(sent), err)
	if errors.Is(err, badgehost.ErrBatchUnsupported) {
		// Nothing was created: award these one by one, now and from now on.
		r.log().Info("the badge host has no batch award; awarding one by one", "badge_class", b.class)
		r.batches.setMissing(b.class)
		for _, c := range sent {
			c.row.AttemptAt = time.Time{}
			c.finish(r.converge(ctx, c.row, c.token, now, c.ann))
		}
		return
	}
	for _, c := range sent {
		k := c.row.Key
		if err != nil {
			c.finish(r.failed(ctx, c.row, c.f, "award", batchFailure(c.f, err, now), now))
			continue
		}
		res, ok := results[c.req.Email]
		switch {
		case !ok:
			// Not in the host's answer: the outcome is unknown, so the row is looked at
			// again once an award could have settled.
			c.f["attempt_at"] = now
			c.finish(outcome{fields: c.f, next: now.Add(r.Settle)}, nil)
			r.log().Warn("batch award left a row unresolved; verifying after settling", "row", k.String(), "user_id", k.UserID)
		case res.Err == nil && res.Assertion.EntityID != "":
			clean := r.Ledger.Renew(ctx, k, c.token, r.Lease) == nil
			out, kerr := r.keep(ctx, c.row, c.token, c.f, []badgehost.Assertion{res.Assertion}, c.timerAt, c.ann)
			if kerr == nil {
				if !clean {
					// The lease may have run out during the POST: verify after settling.
					out.next = earliest(out.next, now.Add(r.Settle))
				}
				r.log().Info("badge awarded", "row", k.String(), "user_id", k.UserID, "badge_class", k.BadgeClass, "entity_id", res.Assertion.EntityID, "batch", len(sent))
			}
			c.finish(out, kerr)
		case res.Err == nil, errors.Is(res.Err, badgehost.ErrAlreadyAwarded):
			// An award exists that this pass did not see: a look-up after settling finds it.
			c.f["attempt_at"] = now
			c.finish(outcome{fields: c.f, next: now.Add(r.Settle)}, nil)
		default:
			c.f["attempt_at"] = now
			c.finish(r.failed(ctx, c.row, c.f, "award", res.Err, now))
		}
	}
}

// batchFailure is what a batch award that failed as a whole means for each of its rows. A wait
// (the rate limiter, a login block, a 429) sent nothing: the attempt is cleared. Anything else
// may have saved some items (Badgr saves them one by one after validating them all), so the
// attempt stays for the row's own look-up, and a refusal is not final for any one row: it is
// retried, and the row's single award then gets the host's own answer.
func batchFailure(f ledger.Fields, err error, now time.Time) error {
	var wait *badgehost.WaitError
	if errors.As(err, &wait) {
		f["attempt_at"] = 0
		return err
	}
	f["attempt_at"] = now
	var permanent *badgehost.PermanentError
	if errors.As(err, &permanent) {
		return fmt.Errorf("batch award refused: %s", permanent.Reason)
	}
	return err
}
