// Package edx turns Open edX certificate and course-passing signals, in every shape they reach
// the bridge (openedx-events JSON, CloudEvents, flattened webhook bodies, event-bus Avro), into
// one normalized Event.
package edx

import "time"

// Event types the bridge acts on.
const (
	TypeCertificateCreated = "org.openedx.learning.certificate.created.v1"
	TypeCertificateChanged = "org.openedx.learning.certificate.changed.v1"
	TypeCertificateRevoked = "org.openedx.learning.certificate.revoked.v1"
	TypePassingStatus      = "org.openedx.learning.course.passing.status.updated.v1"
	TypeCCXPassingStatus   = "org.openedx.learning.ccx.course.passing.status.updated.v1"
)

// Kind is the family of an event, and of a mapping rule.
type Kind string

const (
	KindCertificate Kind = "certificate"
	KindPassing     Kind = "passing"
)

// Event is one normalized Open edX signal. It carries an e-mail address: never log it whole.
type Event struct {
	ID          string    // event id; empty when the sender gave none (no event-level de-duplication)
	Type        string    // full event type, e.g. TypeCertificateCreated
	Kind        Kind      // certificate or passing
	Time        time.Time // event time, UTC; the receive time when the sender gave none
	TimeMissing bool      // Time is the receive time
	Source      string    // metadata source, e.g. openedx/lms/web (may be empty)

	UserID   int64
	Username string
	Email    string // as sent; the ledger lowercases it
	Name     string // profile full name (certificate: the name printed on it when the profile name is empty)

	Course CourseKey // for CCX passing events: the CCX key, with Master set

	// Certificate events.
	Mode           string
	Grade          string
	CertificateURL string // download_url; may be empty for web certificates
	Status         string // current_status

	// Passing events.
	IsPassing bool
}

// Passing certificate statuses (CertificateStatuses.PASSED_STATUSES).
var passedStatuses = map[string]bool{"downloadable": true, "generating": true}

// Statuses that the platform's revocation paths set (invalidate, mark_notpassing,
// mark_unverified) plus the terminal ones; a certificate.changed event with one of these takes the
// badge away. Other non-passing statuses (requesting, error, deleting, …) are transient and change
// nothing.
var revokingStatuses = map[string]bool{
	"unavailable": true, "notpassing": true, "unverified": true, "invalidated": true,
	"deleted": true, "restricted": true, "audit_notpassing": true,
}

// Signal is what an event says about the badges its rules map to.
type Signal int

const (
	SignalNone     Signal = iota // nothing to do (a transient certificate status)
	SignalSupports               // the learner should hold the badge
	SignalRevokes                // certificate revoked: the learner should not hold it
	SignalFailing                // passing rules: not passing at this time
)

// Signal classifies the event for the ledger.
func (e Event) Signal() Signal {
	switch e.Kind {
	case KindPassing:
		if e.IsPassing {
			return SignalSupports
		}
		return SignalFailing
	case KindCertificate:
		if e.Type == TypeCertificateRevoked {
			return SignalRevokes
		}
		if passedStatuses[e.Status] {
			return SignalSupports
		}
		if e.Type == TypeCertificateChanged && revokingStatuses[e.Status] {
			return SignalRevokes
		}
	}
	return SignalNone
}

// KindOf gives the kind of a supported event type, and false for types the bridge ignores.
func KindOf(eventType string) (Kind, bool) {
	switch eventType {
	case TypeCertificateCreated, TypeCertificateChanged, TypeCertificateRevoked:
		return KindCertificate, true
	case TypePassingStatus, TypeCCXPassingStatus:
		return KindPassing, true
	}
	return "", false
}
