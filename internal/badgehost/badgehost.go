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
