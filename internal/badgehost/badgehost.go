// Package badgehost is what reconciling a row needs of a badge host, in the bridge's own terms:
// look up a learner's assertions of a badge class, award, revoke, describe a badge class; and
// the errors that tell the caller what to do next (wait, park, retry). internal/badgr implements
// it for the Badgr v2 API; other hosts can implement it without the reconcile changing.
package badgehost

import (
	"context"
	"errors"
	"time"
)

// Host is a badge host.
type Host interface {
	// Lookup lists the unrevoked assertions of badgeClass held by any of emails, expired ones
	// included. Revoked ones are left out: every assertion found is one the recipient holds.
	Lookup(ctx context.Context, badgeClass string, emails []string) ([]Assertion, error)
	// Award creates an assertion. ErrAlreadyAwarded when the host refuses because an unrevoked
	// one exists already: that is success, and a Lookup finds it.
	Award(ctx context.Context, badgeClass string, r AwardRequest) (Assertion, error)
	// Revoke revokes an assertion; an assertion that is already revoked or gone is success.
	Revoke(ctx context.Context, entityID, reason string) error
	// BadgeClass describes a badge class; a *PermanentError when the host has no such class.
	BadgeClass(ctx context.Context, entityID string) (BadgeClass, error)
}

// AwardRequest is one award to make.
type AwardRequest struct {
	Email          string
	IssuedOn       time.Time // zero: the host's now
	Narrative      string
	EvidenceURL    string
	Notify         bool
	Expires        *time.Time
	IdempotencyKey string // a host that honours idempotency keys makes one assertion per key
}

// Assertion is an awarded badge as the host reports it.
type Assertion struct {
	EntityID         string
	OpenBadgeID      string
	BadgeClass       string
	Recipient        string // plaintext identity, lowercased
	CreatedAt        time.Time
	IssuedOn         time.Time
	Expires          *time.Time
	Revoked          bool
	RevocationReason string
}

// BadgeClass is what the host says of a badge class.
type BadgeClass struct {
	EntityID    string
	OpenBadgeID string
	Name        string
	Description string
	Image       string // URL
}

// ErrAlreadyAwarded is Award's answer when an unrevoked assertion of the class already exists
// for the recipient.
var ErrAlreadyAwarded = errors.New("a previous award of this badge already exists for this recipient")

// WaitError asks the caller not to call the host again before Until: its login is blocked or
// it is rate limiting. Waiting spends none of a row's retries.
type WaitError struct {
	Until  time.Time
	Reason string // for the row and the logs; never a credential
	Err    error
}

func (e *WaitError) Error() string { return e.Err.Error() }
func (e *WaitError) Unwrap() error { return e.Err }

// PermanentError says the same request can never succeed (a validation error, an unknown badge
// class): the row is parked with Reason until an operator or a new fact resumes it.
type PermanentError struct {
	Reason string
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Any other error is retryable. A host that says when to retry implements this on its error.
type retryAfter interface{ RetryAfter() time.Duration }

// RetryAfter is the earliest retry the host asked for in err (0 when it said nothing).
func RetryAfter(err error) time.Duration {
	var ra retryAfter
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

// Bulk is what a host may offer for many awards of one badge class at once: one listing of the
// whole class instead of one look-up per learner, and batch awards. A host without it gets single
// awards; reconcile checks for it with a type assertion.
type Bulk interface {
	// ListClass lists every unrevoked assertion of badgeClass, expired ones included, all pages.
	ListClass(ctx context.Context, badgeClass string) ([]Assertion, error)
	// AwardBatch awards every request (one badge class, distinct lowercased e-mails) in as few
	// host requests as it can. An error means its first request failed as a whole:
	// ErrBatchUnsupported when the host has no batch route (nothing was created), a *WaitError
	// (nothing was sent), a *PermanentError (refused; a host that saves items one by one may have
	// saved some), any other error leaves every item's outcome unknown. Otherwise the results are
	// keyed by lowercased e-mail and matched by recipient, never by position: an item with no
	// result has an unknown outcome; a result's Err is ErrAlreadyAwarded, a *PermanentError for
	// an item the host refused, a *WaitError for an item not sent, or another error for an item
	// the host did not create.
	AwardBatch(ctx context.Context, badgeClass string, reqs []AwardRequest) (map[string]BatchResult, error)
}

// BatchResult is the host's answer for one item of a batch award.
type BatchResult struct {
	Assertion Assertion
	Err       error
}

// ErrBatchUnsupported is AwardBatch's answer when the host has no batch award route (404/405):
// nothing was created, and the caller awards one by one.
var ErrBatchUnsupported = errors.New("the badge host has no batch award")
