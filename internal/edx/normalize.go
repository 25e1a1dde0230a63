package edx

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Payload keys: the one top-level payload field of each kind (openedx-events signals.py).
const (
	certificateKey = "certificate"
	passingKey     = "course_passing_status"
	enrollmentKey  = "enrollment"
)

// payloadKeys are the payload keys of every kind, for telling body shapes apart.
var payloadKeys = []string{certificateKey, passingKey, enrollmentKey}

func payloadKey(k Kind) string {
	switch k {
	case KindPassing:
		return passingKey
	case KindEnrollment:
		return enrollmentKey
	}
	return certificateKey
}

// maxEventIDLen bounds the event id, which the ledger stores as a de-duplication key. Open edX
// sends 36-character UUIDs.
const maxEventIDLen = 200

// normalize validates a document and turns it into an Event. Only the event type, the user id
// and e-mail, the course key, and current_status, is_passing or is_active are required; every
// other field may be missing, because senders differ in what they forward.
func normalize(d document, received time.Time) (Event, error) {
	typ, err := d.eventType()
	if err != nil {
		return Event{}, err
	}
	kind, ok := KindOf(typ)
	if !ok {
		return Event{}, &UnsupportedTypeError{Type: typ}
	}
	ev := Event{Type: typ, Kind: kind}

	if ev.ID, err = d.eventID(); err != nil {
		return Event{}, err
	}
	if ev.Source, err = d.optional(metadataKey + ".source"); err != nil {
		return Event{}, err
	}
	if ev.Time, ev.TimeMissing, err = d.eventTime(metadataKey+".time", received); err != nil {
		return Event{}, err
	}

	p := payloadKey(kind)
	payload, err := d.lookup(p)
	if err != nil {
		return Event{}, err
	}
	if _, ok := payload.(map[string]any); !ok {
		if payload == nil {
			return Event{}, d.fail(p, "missing")
		}
		return Event{}, d.wrongKind(p, payload, "an object")
	}

	if err := d.user(p+".user", &ev); err != nil {
		return Event{}, err
	}
	if ev.Course, err = d.course(typ, p+".course"); err != nil {
		return Event{}, err
	}
	switch kind {
	case KindPassing:
		if ev.IsPassing, err = d.requiredBool(p + ".is_passing"); err != nil {
			return Event{}, err
		}
	case KindEnrollment:
		if err := d.enrollment(p, &ev); err != nil {
			return Event{}, err
		}
	default:
		if err := d.certificate(p, &ev); err != nil {
			return Event{}, err
		}
	}
	return ev, nil
}

// requiredBool gives a boolean field that must be present.
func (d document) requiredBool(path string) (bool, error) {
	v, present, err := d.boolean(path)
	if err != nil {
		return false, err
	}
	if !present {
		return false, d.fail(path, "missing")
	}
	return v, nil
}

// enrollment reads what an enrollment adds to the learner and course: whether it is active
// (required: without it the event says nothing) and its mode (optional, like every field
// senders may leave out of their mapping).
func (d document) enrollment(p string, ev *Event) error {
	var err error
	if ev.IsActive, err = d.requiredBool(p + ".is_active"); err != nil {
		return err
	}
	if ev.Mode, err = d.limited(p + ".mode"); err != nil {
		return err
	}
	ev.Mode = strings.TrimSpace(ev.Mode)
	return nil
}

// eventType gives the event type, which unlike other text fields must be a string: a number
// there is a mapping mistake, not an event type to ignore.
func (d document) eventType() (string, error) {
	const path = metadataKey + ".event_type"
	v, err := d.lookup(path)
	if err != nil {
		return "", err
	}
	if _, ok := v.(string); !ok && v != nil {
		return "", d.wrongKind(path, v, "a string")
	}
	return d.required(path)
}

func (d document) eventID() (string, error) {
	const path = metadataKey + ".id"
	id, err := d.optional(path)
	if err != nil {
		return "", err
	}
	id = strings.TrimSpace(id)
	if len(id) > maxEventIDLen {
		return "", d.fail(path, "longer than 200 bytes")
	}
	if strings.ContainsFunc(id, unicode.IsControl) {
		return "", d.fail(path, "contains control characters")
	}
	return id, nil
}

func (d document) user(path string, ev *Event) error {
	var err error
	if ev.UserID, err = d.userID(path + ".id"); err != nil {
		return err
	}
	emailPath := path + ".pii.email"
	if ev.Email, err = d.required(emailPath); err != nil {
		return err
	}
	if r, bad := hiddenRune(ev.Email, false); bad {
		return d.fail(emailPath, hiddenProblem(r))
	}
	if !PlausibleEmail(ev.Email) {
		return d.fail(emailPath, "not a plausible e-mail address")
	}
	if ev.Username, err = d.name(path + ".pii.username"); err != nil {
		return err
	}
	ev.Name, err = d.name(path + ".pii.name")
	return err
}

// maxTextRunes bounds the free-text fields (names, username, mode, grade, download URL), which
// are stored with every fact and sent to the badge host: the platform's own columns hold 255.
const maxTextRunes = 255

// TextProblem says what is wrong with a free-text field (mode, grade, download URL), "" when
// nothing is: other inputs than events (a backfill file) apply the same limits with it.
func TextProblem(s string) string {
	if utf8.RuneCountInString(s) > maxTextRunes {
		return fmt.Sprintf("longer than %d characters", maxTextRunes)
	}
	return ""
}

// NameProblem says what is wrong with a learner's name or username, "" when nothing is: beyond
// TextProblem, characters that are invisible or reorder text where the name is shown (the badge,
// the host's e-mails, the admin API) are refused.
func NameProblem(s string) string {
	if p := TextProblem(s); p != "" {
		return p
	}
	if r, bad := hiddenRune(s, true); bad {
		return hiddenProblem(r)
	}
	return ""
}

// limited gives an optional free-text field that passes TextProblem.
func (d document) limited(path string) (string, error) {
	return d.checked(path, TextProblem)
}

// name gives an optional name or username that passes NameProblem.
func (d document) name(path string) (string, error) {
	return d.checked(path, NameProblem)
}

func (d document) checked(path string, problem func(string) string) (string, error) {
	s, err := d.optional(path)
	if err != nil {
		return "", err
	}
	if p := problem(s); p != "" {
		return "", d.fail(path, p)
	}
	return s, nil
}

// Zero-width joiners are format characters that Persian, Indic and emoji spellings of a name need;
// they cannot reorder text, unlike the bidi controls.
const (
	zeroWidthNonJoiner = '\u200c'
	zeroWidthJoiner    = '\u200d'
)

// hiddenRune finds a control, format (including every bidi control) or line/paragraph separator
// character. joinersOK lets the zero-width joiners through.
func hiddenRune(s string, joinersOK bool) (rune, bool) {
	for _, r := range s {
		if joinersOK && (r == zeroWidthNonJoiner || r == zeroWidthJoiner) {
			continue
		}
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Bidi_Control) {
			return r, true
		}
	}
	return 0, false
}

func hiddenProblem(r rune) string {
	return fmt.Sprintf("contains U+%04X, a control, format or bidi character", r)
}

// course parses the course key. A CCX passing event names the CCX in ccx_course_key and its
// master course in master_course_key; the master is re-derived from the CCX key when that
// field is missing or unusable, as the platform derives it anyway (to_course_locator()).
func (d document) course(eventType, path string) (CourseKey, error) {
	if eventType != TypeCCXPassingStatus {
		return d.courseKey(path + ".course_key")
	}
	key, err := d.courseKey(path + ".ccx_course_key")
	if err != nil {
		return CourseKey{}, err
	}
	if key.Style != StyleCCXV1 {
		return CourseKey{}, d.fail(path+".ccx_course_key", show(key.Raw)+" is not a ccx-v1 key")
	}
	if s, _, err := d.text(path + ".master_course_key"); err == nil && s != "" {
		if m, err := ParseCourseKey(s); err == nil && m.Style == StyleCourseV1 {
			key.Master = &m
		}
	}
	return key, nil
}

func (d document) courseKey(path string) (CourseKey, error) {
	s, err := d.required(path)
	if err != nil {
		return CourseKey{}, err
	}
	key, err := ParseCourseKey(s)
	if err != nil {
		problem := strings.TrimPrefix(err.Error(), "course key ")
		if d.form && strings.Contains(s, " ") {
			problem += ` (in a form body, "+" must be sent as %2B)`
		}
		return CourseKey{}, d.fail(path, problem)
	}
	return key, nil
}

func (d document) certificate(p string, ev *Event) error {
	var err error
	if ev.Status, err = d.required(p + ".current_status"); err != nil {
		return err
	}
	if ev.Mode, err = d.limited(p + ".mode"); err != nil {
		return err
	}
	if ev.Grade, err = d.limited(p + ".grade"); err != nil {
		return err
	}
	if ev.CertificateURL, err = d.limited(p + ".download_url"); err != nil {
		return err
	}
	ev.Mode, ev.Grade, ev.CertificateURL = strings.TrimSpace(ev.Mode), strings.TrimSpace(ev.Grade), strings.TrimSpace(ev.CertificateURL)
	printed, err := d.name(p + ".name")
	if err != nil {
		return err
	}
	if strings.TrimSpace(ev.Name) == "" {
		ev.Name = printed
	}
	return nil
}
