package reconcile

import (
	"context"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/ledger"
)

// announcements collects what one reconcile pass must announce on the event bus (contract
// 9.4); the pass hands them to the ledger with its outcome, so they are recorded in the same
// atomic write. The rules, which keep every announcement at least once across crashes:
//
//   - awarded: when the row records an assertion it did not record before and the bridge made
//     an award attempt for it — the attempt mark (written before every POST) was set when the
//     pass read the row, or the pass posts itself. A crash between the host's 2xx and the row
//     write leaves the mark, so the next pass, which finds the assertion by look-up, announces
//     it. An assertion found on the host that the bridge never tried to create (awarded by hand,
//     say) is adopted silently.
//   - revoked: every assertion the pass revokes, not-held revocations and duplicates alike (a
//     duplicate is announced as revoked only: the learner held one badge throughout). And when a
//     row that recorded an issued assertion is found not to hold it any more while it should
//     not: the revocation of a pass that crashed after the host's 2xx, which no look-up can find
//     again, or one made on the host directly.
type announcements struct {
	row       *ledger.Row
	attempted bool
	now       func() time.Time
	off       bool // announcements are not configured: the outbox is not written at all
	list      []ledger.Announcement
}

func newAnnouncements(row *ledger.Row, now func() time.Time, on bool) *announcements {
	return &announcements{row: row, attempted: !row.AttemptAt.IsZero(), now: now, off: !on}
}

func (a *announcements) add(kind string, x badgehost.Assertion) {
	if a.off {
		return
	}
	a.list = append(a.list, ledger.Announcement{
		Kind: kind, Row: a.row.Key, EntityID: x.EntityID, OpenBadgeID: x.OpenBadgeID, At: a.now(),
	})
}

// isNew tells whether x is an assertion the row has not recorded.
func (a *announcements) isNew(x badgehost.Assertion) bool {
	return x.EntityID != a.row.EntityID
}

// kept is the assertion the row records as held from now on.
func (a *announcements) kept(x badgehost.Assertion) {
	if a.attempted && a.isNew(x) {
		a.add(ledger.AnnounceAwarded, x)
	}
}

// revoked is an assertion the pass revoked because the learner should not hold the badge. One
// the bridge created but never recorded (a crashed attempt) is announced as awarded first, so
// that consumers see it come and go.
func (a *announcements) revoked(x badgehost.Assertion) {
	if a.attempted && a.isNew(x) {
		a.add(ledger.AnnounceAwarded, x)
	}
	a.add(ledger.AnnounceRevoked, x)
}

// duplicateRevoked is an extra assertion the pass revoked next to the one it keeps.
func (a *announcements) duplicateRevoked(x badgehost.Assertion) {
	a.add(ledger.AnnounceRevoked, x)
}

// notHeld is called on a not-held row after its revocations: when the row recorded an issued
// assertion that the look-up no longer found, its revocation happened without a row write.
func (a *announcements) notHeld(found []badgehost.Assertion) {
	r := a.row
	if r.State != ledger.StateIssued || r.EntityID == "" {
		return
	}
	for _, x := range found {
		if x.EntityID == r.EntityID {
			return // revoked in this pass, and announced then
		}
	}
	a.add(ledger.AnnounceRevoked, badgehost.Assertion{EntityID: r.EntityID, OpenBadgeID: r.OpenBadgeID})
}

// salvage records the announcements of a pass that could not write its outcome (shutdown, lost
// lease): the host changes it made are real, and no later look-up finds a revoked assertion.
// A fresh context, as for the unlock: the job's own may be done.
func (r *Reconciler) salvage(ctx context.Context, a *announcements) {
	if a == nil || len(a.list) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.Ledger.AppendOutbox(sctx, a.list); err != nil {
		r.log().Error("announcements of an interrupted reconcile lost", "row", a.row.Key.String(), "announcements", len(a.list), "err", err)
	}
}
