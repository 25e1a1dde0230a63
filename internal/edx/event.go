// Package edx turns Open edX certificate, course-passing and enrollment signals, in every shape
// they reach the bridge (openedx-events JSON, CloudEvents, flattened webhook bodies, event-bus
// Avro), into one normalized Event.
package edx

import "time"

// Event types the bridge acts on.
const (
	TypeCertificateCreated = "org.openedx.learning.certificate.created.v1"
	TypeCertificateChanged = "org.openedx.learning.certificate.changed.v1"
	TypeCertificateRevoked = "org.openedx.learning.certificate.revoked.v1"
	TypePassingStatus      = "org.openedx.learning.course.passing.status.updated.v1"
	TypeCCXPassingStatus   = "org.openedx.learning.ccx.course.passing.status.updated.v1"
	TypeEnrollmentCreated  = "org.openedx.learning.course.enrollment.created.v1"
	TypeEnrollmentChanged  = "org.openedx.learning.course.enrollment.changed.v1"
)

// Kind is the family of an event, and of a mapping rule.
type Kind string

const (
	KindCertificate Kind = "certificate"
	KindPassing     Kind = "passing"
	// KindEnrollment events only feed milestone rules (CONTRACT 9.2, earned_by: enrollment):
	// being enrolled is never a badge of its own.
	KindEnrollment Kind = "enrollment"
)

// Event is one normalized Open edX signal. It carries an e-mail address: never log it whole.
type Event struct {
	ID          string    // event id; empty when the sender gave none (no event-level de-duplication)
	Type        string    // full event type, e.g. TypeCertificateCreated
	Kind        Kind      // certificate, passing or enrollment
	Time        time.Time // event time, UTC; the receive time when the sender gave none
	TimeMissing bool      // Time is the receive time
	Source      string    // metadata source, e.g. openedx/lms/web (may be empty)

	UserID   int64
	Username string
	Email    string // as sent; the ledger lowercases it
	Name     string // profile full name (certificate: the name printed on it when the profile name is empty)

	Course CourseKey // for CCX passing events: the CCX key, with Master set

	// Certificate events; Mode is also the enrollment's mode (audit, verified, …).
	Mode           string
	Grade          string
	CertificateURL string // download_url; may be empty for web certificates
	Status         string // current_status

	// Passing events.
	IsPassing bool

	// Enrollment events: enrollment.is_active, whether the learner is enrolled in the run (not
	// the account flag user.is_active, which the bridge ignores).
	IsActive bool
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
	SignalSupports               // the learner should hold the badge (enrollment: is enrolled)
	SignalRevokes                // certificate revoked (enrollment: unenrolled): the learner should not hold it
	SignalFailing                // passing rules: not passing at this time
)

// Signal classifies the event for the ledger. For an enrollment it only says whether the
// learner is enrolled (SignalSupports) or no longer is (SignalRevokes): enrollments feed the
// learner record that milestone rules read, and which rules an outcome affects is for the
// intake and rules to decide, not for this classification.
func (e Event) Signal() Signal {
	switch e.Kind {
	case KindEnrollment:
		if e.IsActive {
			return SignalSupports
		}
		return SignalRevokes
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
	case TypeEnrollmentCreated, TypeEnrollmentChanged:
		return KindEnrollment, true
	}
	return "", false
}
