package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// milestoneFile wraps a rule's body lines (indented as under "- ") in a mapping file. The rule's
// first line is line 2 of the file.
func milestoneFile(lines ...string) string {
	var b strings.Builder
	b.WriteString("badges:\n")
	for i, l := range lines {
		if i == 0 {
			b.WriteString("  - " + l + "\n")
		} else {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}

// ruleHead is the first lines of a milestone rule: name (line 2), badge_class (3), when (4),
// milestone (5). The milestone's own lines start at 6.
var ruleHead = []string{"name: Pathway", "badge_class: DSPathway0000000000000a", "when:", "  milestone:"}

func withHead(lines ...string) string {
	return milestoneFile(append(append([]string(nil), ruleHead...), lines...)...)
}

func TestParseMilestoneProblems(t *testing.T) {
	cases := []struct {
		name string
		file string
		line int
		msg  string
	}{
		{"a group with no courses", withHead(
			"    all_of:",
			"      - count: 2", // 7
		), 7, "a group with no courses"},
		{"an empty courses list", withHead(
			"    courses: []", // 6
		), 6, "empty list"},
		{"count below 1", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    count: 0", // 7
		), 7, "at least 1"},
		{"count not a number", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    count: two", // 7
		), 7, "at least 1"},
		{"count above the distinct courses of exact keys", withHead(
			"    all_of:",
			`      - courses: ["course-v1:A+B+R1", "course-v1:A+B+R2", "course-v1:A+C+R1"]`, // 7
			"        count: 3", // 8
		), 8, "only 2 distinct course"},
		{"count above exact keys differing only in case", withHead(
			`    courses: ["course-v1:A+B+R1", "course-v1:a+b+R2"]`,
			"    count: 2", // 7
		), 7, "only 1 distinct course"},
		{"both courses and all_of", withHead(
			"    any_of:",
			`      - courses: ["course-v1:A+B+*"]`, // 7
			"        all_of:",
			`          - courses: ["course-v1:A+C+*"]`,
		), 7, "not both"},
		{"both courses and any_of at the top", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    any_of:",
			`      - courses: ["course-v1:A+C+*"]`,
		), 5, "not both"},
		{"depth over 4", withHead(
			"    all_of:",
			"      - any_of:",
			"          - all_of:",
			"              - any_of:",
			`                  - courses: ["course-v1:A+B+*"]`, // 10: depth 5
		), 10, "deeper than 4"},
		{"min_grade above 1", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    min_grade: 1.5", // 7
		), 7, "from 0 to 1"},
		{"min_grade below 0", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    min_grade: -0.1", // 7
		), 7, "from 0 to 1"},
		{"min_grade not a number", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    min_grade: high", // 7
		), 7, "from 0 to 1"},
		{"min_grade NaN", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    min_grade: nan", // 7
		), 7, "from 0 to 1"},
		{"min_grade on a passing item", withHead(
			"    earned_by: passing",
			`    courses: ["course-v1:A+B+*"]`,
			"    min_grade: 0.5", // 8
		), 8, "only to courses earned_by certificate"},
		{"min_grade above an enrollment item", withHead(
			"    min_grade: 0.5",
			"    all_of:",
			`      - courses: ["course-v1:A+B+*"]`, // 8
			"        earned_by: enrollment",
		), 8, "only to courses earned_by certificate"},
		{"unknown key in an item", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    cont: 2", // 7
		), 7, "cont"},
		{"unknown earned_by", withHead(
			`    courses: ["course-v1:A+B+*"]`,
			"    earned_by: grade", // 7
		), 7, "not certificate, passing or enrollment"},
		{"any_of count above its items", withHead(
			"    count: 3",
			"    any_of:", // 7
			`      - courses: ["course-v1:A+B+*"]`,
			`      - courses: ["course-v1:A+C+*"]`,
		), 7, "more than its 2 items"},
		{"count on all_of", withHead(
			"    count: 2", // 6
			"    all_of:",
			`      - courses: ["course-v1:A+B+*"]`,
			`      - courses: ["course-v1:A+C+*"]`,
		), 6, "all_of needs every item"},
		{"rule-level revoke_after on a milestone", milestoneFile(append(append([]string(nil), ruleHead...),
			`    courses: ["course-v1:A+B+*"]`,
			"    earned_by: passing",
			"revoke: true",
			"revoke_after: 72h", // 9
		)...), 9, "inside when.milestone"},
		{"when.courses beside milestone", milestoneFile(
			"name: Pathway", "badge_class: DSPathway0000000000000a", "when:",
			`  courses: ["course-v1:A+B+*"]`, // 5
			"  milestone:",
			`    courses: ["course-v1:A+B+*"]`,
		), 5, "inside when.milestone"},
		{"when.min_grade on a passing rule", milestoneFile(
			"name: Passing", "badge_class: DSPathway0000000000000a", "when:",
			"  event: passing",
			`  courses: ["course-v1:A+B+*"]`,
			"  min_grade: 0.9", // 7
		), 7, "only certificate rules have a grade"},
		{"when.min_grade outside 0-1", milestoneFile(
			"name: Honours", "badge_class: DSPathway0000000000000a", "when:",
			`  courses: ["course-v1:A+B+*"]`,
			"  min_grade: 90", // 6
		), 6, "from 0 to 1"},
		{".CourseKey in a milestone narrative", milestoneFile(append(append([]string(nil), ruleHead...),
			`    courses: ["course-v1:A+B+*"]`,
			`narrative: "Completed {{.CourseKey}}"`, // 7
		)...), 7, "CourseKey"},
		{".Grade in a milestone evidence_url", milestoneFile(append(append([]string(nil), ruleHead...),
			`    courses: ["course-v1:A+B+*"]`,
			`evidence_url: "https://x.example/{{.Grade}}"`, // 7
		)...), 7, "Grade"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.file))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v, want a *ValidationError\n%s", err, c.file)
			}
			for _, p := range ve.Problems {
				if p.Line == c.line && strings.Contains(p.Message, c.msg) {
					return
				}
			}
			t.Errorf("no problem at line %d containing %q; got:\n%s\nfile:\n%s", c.line, c.msg, ve.Error(), numbered(c.file))
		})
	}
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d %s\n", i+1, l)
	}
	return b.String()
}

func TestParseMilestoneValid(t *testing.T) {
	cases := []struct {
		name string
		file string
	}{
		{"count equal to the distinct exact courses", withHead(
			`    courses: ["course-v1:A+B+R1", "course-v1:A+C+R1"]`,
			"    count: 2",
		)},
		{"count above the patterns when one is a glob", withHead(
			`    courses: ["course-v1:A+*"]`,
			"    count: 5",
		)},
		{"depth 4", withHead(
			"    all_of:",
			"      - any_of:",
			"          - all_of:",
			`              - courses: ["course-v1:A+B+*"]`,
		)},
		{"min_grade 0 and 1", withHead(
			"    all_of:",
			`      - courses: ["course-v1:A+B+*"]`,
			"        min_grade: 0",
			`      - courses: ["course-v1:A+C+*"]`,
			"        min_grade: 1",
		)},
		{".Courses and its length in a narrative", milestoneFile(append(append([]string(nil), ruleHead...),
			`    courses: ["course-v1:A+B+*"]`,
			`narrative: "Completed {{len .Courses}} courses: {{range .Courses}}{{.}} {{end}}by {{.Username}} ({{.UserID}}, {{.Name}}) at {{.EventTime}}"`,
		)...)},
		{"a certificate item below a passing default is fine with min_grade", withHead(
			"    earned_by: passing",
			"    all_of:",
			`      - courses: ["course-v1:A+B+*"]`,
			"        earned_by: certificate",
			"        min_grade: 0.8",
		)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Parse([]byte(c.file)); err != nil {
				t.Errorf("Parse: %v\n%s", err, numbered(c.file))
			}
		})
	}
}

func TestParseMilestoneShortForm(t *testing.T) {
	m, err := Parse([]byte(withHead(`    {courses: ["course-v1:A+*", "course-v1:B+*"], count: 5}`)))
	if err != nil {
		t.Fatal(err)
	}
	r := m.Rules[0]
	if r.Kind != KindMilestone || r.Milestone == nil {
		t.Fatalf("kind %s, milestone %v", r.Kind, r.Milestone)
	}
	q := r.Milestone
	if q.Count != 5 || len(q.Courses) != 2 || len(q.AllOf)+len(q.AnyOf) != 0 || q.EarnedBy != edx.KindCertificate {
		t.Errorf("short form = %+v, want one certificate group of count 5", q)
	}
	if !r.Revoke {
		t.Error("a certificate milestone revokes by default")
	}
}

func TestParseMilestoneInheritance(t *testing.T) {
	m, err := Parse([]byte(withHead(
		"    earned_by: enrollment",
		"    modes: [verified]",
		"    include_ccx: true",
		"    all_of:",
		`      - courses: ["course-v1:A+B+*"]`, // inherits everything
		"      - earned_by: certificate",
		"        min_grade: 0.7",
		"        any_of:",
		`          - courses: ["course-v1:A+C+*"]`, // certificate, 0.7, verified, ccx
		`          - courses: ["course-v1:A+D+*"]`,
		"            modes: [honor]",
		"            min_grade: 0.9",
		"            include_ccx: false",
		"      - earned_by: passing",
		"        modes: []",
		"        all_of:",
		`          - courses: ["course-v1:A+E+*"]`,
		"            revoke_after: 48h",
	)))
	if err != nil {
		t.Fatal(err)
	}
	root := m.Rules[0].Milestone
	if len(root.AllOf) != 3 {
		t.Fatalf("all_of has %d items", len(root.AllOf))
	}
	a := root.AllOf[0]
	c, d := root.AllOf[1].AnyOf[0], root.AllOf[1].AnyOf[1]
	e := root.AllOf[2].AllOf[0]
	type view struct {
		by    edx.Kind
		modes string
		min   float64
		ccx   bool
		after time.Duration
	}
	v := func(q *Requirement) view {
		return view{q.EarnedBy, strings.Join(q.Modes, ","), q.MinGrade, q.IncludeCCX, q.RevokeAfter}
	}
	for _, tc := range []struct {
		name string
		got  view
		want view
	}{
		{"A", v(a), view{edx.KindEnrollment, "verified", 0, true, 0}},
		{"C", v(c), view{edx.KindCertificate, "verified", 0.7, true, 0}},
		{"D", v(d), view{edx.KindCertificate, "honor", 0.9, false, 0}},
		{"E", v(e), view{edx.KindPassing, "", 0, true, 48 * time.Hour}},
	} {
		if tc.got != tc.want {
			t.Errorf("item %s: %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
	if !m.Rules[0].Revoke {
		t.Error("a milestone with non-passing items revokes by default")
	}
}

func TestParseMilestoneRevokeDefault(t *testing.T) {
	cases := []struct {
		name string
		body []string
		want bool
	}{
		{"certificate group", []string{`    courses: ["course-v1:A+B+*"]`}, true},
		{"enrollment group", []string{"    earned_by: enrollment", `    courses: ["course-v1:A+B+*"]`}, true},
		{"passing group", []string{"    earned_by: passing", `    courses: ["course-v1:A+B+*"]`}, false},
		{"every item passing, inherited", []string{
			"    earned_by: passing",
			"    any_of:",
			`      - courses: ["course-v1:A+B+*"]`,
			"      - all_of:",
			`          - courses: ["course-v1:A+C+*"]`,
		}, false},
		{"every item passing, each its own", []string{
			"    all_of:",
			`      - courses: ["course-v1:A+B+*"]`,
			"        earned_by: passing",
			`      - courses: ["course-v1:A+C+*"]`,
			"        earned_by: passing",
		}, false},
		{"one item not passing", []string{
			"    earned_by: passing",
			"    all_of:",
			`      - courses: ["course-v1:A+B+*"]`,
			`      - courses: ["course-v1:A+C+*"]`,
			"        earned_by: enrollment",
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, explicit := range []string{"", "revoke: true", "revoke: false"} {
				lines := append(append([]string(nil), ruleHead...), c.body...)
				want := c.want
				if explicit != "" {
					lines = append(lines, explicit)
					want = explicit == "revoke: true"
				}
				m, err := Parse([]byte(milestoneFile(lines...)))
				if err != nil {
					t.Fatal(err)
				}
				if got := m.Rules[0].Revoke; got != want {
					t.Errorf("%q: revoke = %v, want %v", explicit, got, want)
				}
			}
		})
	}
}

func TestParseHonours(t *testing.T) {
	m, err := Parse([]byte(milestoneFile(
		"name: Honours", "badge_class: DSPathway0000000000000a", "when:",
		`  courses: ["course-v1:A+B+*"]`,
		"  min_grade: 0.9",
	)))
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Rules[0]; r.MinGrade != 0.9 || r.Kind != edx.KindCertificate {
		t.Errorf("rule = kind %s min_grade %v", r.Kind, r.MinGrade)
	}
}
