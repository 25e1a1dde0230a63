package backfill

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// CSV column names (CONTRACT section 2).
const (
	colUserID   = "user_id"
	colEmail    = "email"
	colCourse   = "course_key"
	colMode     = "mode"
	colIssuedOn = "issued_on"
	colName     = "name"  // optional
	colGrade    = "grade" // optional: a decimal in 0–1, for rules with min_grade
)

const headerHint = "user_id,email,course_key,mode,issued_on[,name][,grade]"

// idPrefix starts the event id of every CSV row.
const idPrefix = "backfill-"

// futureSkew is how far past the clock an issue date may lie (clock drift between the LMS
// database and this host). A later date is refused: the ledger keeps the newest fact, so a
// certificate dated in the future would outrank a real revocation until that date.
const futureSkew = 5 * time.Minute

// csvSource reads the CSV format: one certificate per row.
type csvSource struct {
	cr     *csv.Reader
	offset int // lines before the header (blank lines skipped while detecting the format)
	cols   columns
	now    func() time.Time
	pos    int
}

func newCSVSource(r io.Reader, offset int, name string, now func() time.Time) (*csvSource, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a row of the wrong width is reported and skipped, not fatal
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if pe, ok := csvSyntaxError(err); ok {
			return nil, fmt.Errorf("%s:%d: header: invalid CSV: %w", name, pe.StartLine+offset, pe.Err)
		}
		return nil, fmt.Errorf("%s: read: %w", name, err)
	}
	s := &csvSource{cr: cr, offset: offset, now: now, pos: offset + 1}
	if err := s.cols.parse(header); err != nil {
		return nil, fmt.Errorf("%s:%d: header: %w", name, offset+1, err)
	}
	return s, nil
}

func (s *csvSource) position() int { return s.pos }

func (s *csvSource) next() (item, error) {
	for {
		rec, err := s.cr.Read()
		if err != nil {
			if pe, ok := csvSyntaxError(err); ok {
				s.pos = pe.Line + s.offset
				return item{line: pe.StartLine + s.offset, err: fmt.Errorf("invalid CSV: %w", pe.Err)}, nil
			}
			return item{}, err // io.EOF or a read error
		}
		start, _ := s.cr.FieldPos(0)
		end, _ := s.cr.FieldPos(len(rec) - 1)
		s.pos = end + s.offset
		if blank(rec) {
			continue // spreadsheets save empty rows as ",,,,"
		}
		ev, err := s.cols.event(rec, s.now())
		if err != nil {
			return item{line: start + s.offset, err: err}, nil
		}
		return item{line: start + s.offset, ev: ev}, nil
	}
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// columns is where each column sits in a row.
type columns struct {
	userID, email, course, mode, issuedOn, name, grade int // name and grade are -1 when absent
	width                                              int
}

// parse reads the header. Columns may come in any order; an unknown column is an error rather
// than ignored, because it usually means a misspelt required one or a file meant for another
// tool, and guessing would award the wrong thing.
func (c *columns) parse(header []string) error {
	slots := map[string]*int{
		colUserID: &c.userID, colEmail: &c.email, colCourse: &c.course,
		colMode: &c.mode, colIssuedOn: &c.issuedOn, colName: &c.name, colGrade: &c.grade,
	}
	for _, p := range slots {
		*p = -1
	}
	c.width = len(header)
	var unknown, twice []string
	known := 0
	for i, cell := range header {
		cell = strings.TrimSpace(cell)
		p, ok := slots[cell]
		switch {
		case !ok:
			unknown = append(unknown, quote(cell))
		case *p >= 0:
			twice = append(twice, cell)
		default:
			*p = i
			known++
		}
	}
	if known == 0 {
		// Most likely a file without a header: do not repeat its first row, which holds an
		// e-mail address.
		return fmt.Errorf("the first line is not the CSV header %s", headerHint)
	}
	var problems []string
	if len(unknown) > 0 {
		problems = append(problems, fmt.Sprintf("unknown column(s) %s", strings.Join(unknown, ", ")))
	}
	if len(twice) > 0 {
		problems = append(problems, fmt.Sprintf("column(s) given twice: %s", strings.Join(twice, ", ")))
	}
	var missing []string
	for _, col := range []string{colUserID, colEmail, colCourse, colMode, colIssuedOn} {
		if *slots[col] < 0 {
			missing = append(missing, col)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("missing column(s) %s", strings.Join(missing, ", ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s (want %s, in any order)", strings.Join(problems, "; "), headerHint)
	}
	return nil
}

// event turns a row into the certificate.created event the LMS would have sent for it.
func (c *columns) event(rec []string, now time.Time) (edx.Event, error) {
	if len(rec) != c.width {
		what := "a column is missing"
		if len(rec) > c.width {
			what = "extra columns"
		}
		return edx.Event{}, fmt.Errorf("%d fields, but the header has %d: %s", len(rec), c.width, what)
	}
	uid, err := parseUserID(rec[c.userID])
	if err != nil {
		return edx.Event{}, err
	}
	email := strings.TrimSpace(rec[c.email])
	switch {
	case email == "":
		return edx.Event{}, &edx.FieldError{Path: colEmail, Problem: "missing"}
	case !edx.PlausibleEmail(email):
		return edx.Event{}, &edx.FieldError{Path: colEmail, Problem: "not a plausible e-mail address"}
	}
	raw := strings.TrimSpace(rec[c.course])
	if raw == "" {
		return edx.Event{}, &edx.FieldError{Path: colCourse, Problem: "missing"}
	}
	course, err := edx.ParseCourseKey(raw)
	if err != nil {
		return edx.Event{}, &edx.FieldError{Path: colCourse, Problem: strings.TrimPrefix(err.Error(), "course key ")}
	}
	issued, err := parseIssuedOn(rec[c.issuedOn], now)
	if err != nil {
		return edx.Event{}, err
	}
	ev := edx.Event{
		ID:     eventID(uid, course.Raw, issued),
		Type:   edx.TypeCertificateCreated,
		Kind:   edx.KindCertificate,
		Time:   issued,
		UserID: uid,
		Email:  email,
		Course: course,
		Mode:   strings.TrimSpace(rec[c.mode]),
		// Only passing certificates belong in a backfill file, and "downloadable" is the status
		// of an issued one.
		Status: "downloadable",
	}
	if p := edx.TextProblem(ev.Mode); p != "" {
		return edx.Event{}, &edx.FieldError{Path: colMode, Problem: p}
	}
	if c.name >= 0 {
		ev.Name = strings.TrimSpace(rec[c.name])
		// The same limits as on every other path: the name goes into the award text.
		if p := edx.NameProblem(ev.Name); p != "" {
			return edx.Event{}, &edx.FieldError{Path: colName, Problem: p}
		}
	}
	if c.grade >= 0 {
		ev.Grade = strings.TrimSpace(rec[c.grade])
		if g, err := strconv.ParseFloat(ev.Grade, 64); ev.Grade != "" && (err != nil || g < 0 || g > 1) {
			return edx.Event{}, &edx.FieldError{Path: colGrade, Problem: quote(ev.Grade) + " is not a grade (want a decimal from 0 to 1)"}
		}
	}
	return ev, nil
}

// eventID is the event id of a CSV row: derived from the certificate alone, so that a second
// run of the same file (or of an export in another date format) is recognised as a duplicate
// instead of being recorded again.
func eventID(userID int64, courseKey string, issuedOn time.Time) string {
	key := strconv.FormatInt(userID, 10) + "|" + courseKey + "|" +
		issuedOn.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	sum := sha256.Sum256([]byte(key))
	return idPrefix + hex.EncodeToString(sum[:16])
}

// parseUserID reads an LMS user id as the webhook does: decimal digits, at least 1 (0 is a
// placeholder, not a learner).
func parseUserID(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, &edx.FieldError{Path: colUserID, Problem: "missing"}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || s[0] == '+' {
		return 0, &edx.FieldError{Path: colUserID, Problem: quote(s) + " is not a user id (want a positive integer)"}
	}
	return n, nil
}

// parseIssuedOn reads the issue date into UTC with the microsecond precision the ledger
// compares at.
func parseIssuedOn(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, &edx.FieldError{Path: colIssuedOn, Problem: "missing"}
	}
	t, ok := edx.ParseTime(s)
	if !ok {
		// A plain date, for hand-made files: midnight UTC.
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return time.Time{}, &edx.FieldError{Path: colIssuedOn,
				Problem: quote(s) + " is not a time (want RFC 3339, 2024-05-27 12:25:45.678901+00:00 or 2024-05-27)"}
		}
		t = d
	}
	if t.After(now.Add(futureSkew)) {
		return time.Time{}, &edx.FieldError{Path: colIssuedOn, Problem: quote(s) + " is in the future"}
	}
	return t, nil
}
