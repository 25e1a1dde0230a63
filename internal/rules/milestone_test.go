package rules

import (
	"slices"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// Record builders: one outcome of one run.
func certRun(at int64, earned bool, mode, grade string) *RunRecord {
	return &RunRecord{Cert: &CertOutcome{Earned: earned, Mode: mode, Grade: grade, At: at}}
}

func passRun(at int64, passing bool, lastTrue, since int64) *RunRecord {
	return &RunRecord{Pass: &PassOutcome{Passing: passing, At: at, LastTrue: lastTrue, Since: since}}
}

func enrollRun(at int64, active bool, mode string) *RunRecord {
	return &RunRecord{Enroll: &EnrollOutcome{Active: active, Mode: mode, At: at}}
}

func group(by edx.Kind, count int, courses ...string) *Requirement {
	return &Requirement{Courses: courses, Count: count, EarnedBy: by}
}

const hour = int64(time.Hour / time.Microsecond)

func TestEvaluateWhenACourseCounts(t *testing.T) {
	const now = 1000 * hour
	withModes := func(q *Requirement, modes ...string) *Requirement { q.Modes = modes; return q }
	withMin := func(q *Requirement, g float64) *Requirement { q.MinGrade = g; return q }
	withAfter := func(q *Requirement, d time.Duration) *Requirement { q.RevokeAfter = d; return q }
	withCCX := func(q *Requirement) *Requirement { q.IncludeCCX = true; return q }
	cert := func() *Requirement { return group(edx.KindCertificate, 1, "course-v1:A+B+*") }
	pass := func() *Requirement { return group(edx.KindPassing, 1, "course-v1:A+B+*") }
	enr := func() *Requirement { return group(edx.KindEnrollment, 1, "course-v1:A+B+*") }
	const r1 = "course-v1:A+B+R1"
	cases := []struct {
		name      string
		q         *Requirement
		rec       Record
		met       bool
		at, until int64
	}{
		{"certificate earned", cert(), Record{r1: certRun(5, true, "honor", "")}, true, 5, 0},
		{"certificate not earned (revoked)", cert(), Record{r1: certRun(5, false, "honor", "")}, false, 0, 0},
		{"certificate of another course", cert(), Record{"course-v1:A+C+R1": certRun(5, true, "", "")}, false, 0, 0},
		{"no outcome of the kind", cert(), Record{r1: passRun(5, true, 5, 0)}, false, 0, 0},
		{"certificate in a listed mode", withModes(cert(), "verified"), Record{r1: certRun(5, true, "verified", "")}, true, 5, 0},
		{"certificate mode compared case-insensitively", withModes(cert(), "Verified"), Record{r1: certRun(5, true, "verified", "")}, true, 5, 0},
		{"certificate in another mode", withModes(cert(), "verified"), Record{r1: certRun(5, true, "audit", "")}, false, 0, 0},
		{"grade at min_grade", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "0.8")}, true, 5, 0},
		{"grade above min_grade", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "0.95")}, true, 5, 0},
		{"grade below min_grade", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "0.79")}, false, 0, 0},
		{"missing grade with min_grade", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "")}, false, 0, 0},
		{"grade above 1", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "1.5")}, false, 0, 0},
		{"grade not a number", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "A+")}, false, 0, 0},
		{"grade a percentage", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "85")}, false, 0, 0},
		{"grade NaN", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "NaN")}, false, 0, 0},
		{"grade Inf", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", "Inf")}, false, 0, 0},
		{"grade in hex", withMin(cert(), 0.5), Record{r1: certRun(5, true, "", "0x1p-1")}, false, 0, 0},
		{"grade with spaces around", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", " 0.9 ")}, true, 5, 0},
		{"grade without a leading zero", withMin(cert(), 0.8), Record{r1: certRun(5, true, "", ".9")}, true, 5, 0},
		{"grade 1", withMin(cert(), 1), Record{r1: certRun(5, true, "", "1.0")}, true, 5, 0},
		{"revoked with a high grade", withMin(cert(), 0.8), Record{r1: certRun(5, false, "", "0.9")}, false, 0, 0},
		{"passing", pass(), Record{r1: passRun(7, true, 7, 0)}, true, 7, 0},
		{"passing re-sent: counts from the latest true", pass(), Record{r1: passRun(9, true, 9, 0)}, true, 9, 0},
		{"not passing, revoke_after 0", pass(), Record{r1: passRun(9, false, 7, 9)}, false, 0, 0},
		{"not passing within revoke_after", withAfter(pass(), time.Hour), Record{r1: passRun(now-10, false, 7, now-30)}, true, 7, now - 30 + hour},
		{"not passing, revoke_after run out", withAfter(pass(), time.Hour), Record{r1: passRun(now-10, false, 7, now-hour)}, false, 0, 0},
		{"never passed", withAfter(pass(), time.Hour), Record{r1: passRun(now-10, false, 0, now-10)}, false, 0, 0},
		{"enrolled", enr(), Record{r1: enrollRun(3, true, "audit")}, true, 3, 0},
		{"unenrolled", enr(), Record{r1: enrollRun(3, false, "audit")}, false, 0, 0},
		{"enrolled in a listed mode", withModes(enr(), "verified"), Record{r1: enrollRun(3, true, "verified")}, true, 3, 0},
		{"enrolled in another mode", withModes(enr(), "verified"), Record{r1: enrollRun(3, true, "audit")}, false, 0, 0},
		{"a CCX run without include_ccx", cert(), Record{"ccx-v1:A+B+R1+ccx@3": certRun(5, true, "", "")}, false, 0, 0},
		{"a CCX run with include_ccx counts as its master", withCCX(cert()), Record{"ccx-v1:A+B+R1+ccx@3": certRun(5, true, "", "")}, true, 5, 0},
		{"a CCX run of another master", withCCX(cert()), Record{"ccx-v1:A+C+R1+ccx@3": certRun(5, true, "", "")}, false, 0, 0},
		{"an unparsable run key", cert(), Record{"course-v1:A+B": certRun(5, true, "", "")}, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := c.q.Evaluate(c.rec, now)
			if ev.Met != c.met || ev.At != c.at || ev.Until != c.until {
				t.Errorf("Evaluate = met %v at %d until %d, want met %v at %d until %d", ev.Met, ev.At, ev.Until, c.met, c.at, c.until)
			}
			if !c.met && len(ev.Missing) == 0 {
				t.Error("not met, but Missing is empty")
			}
			if c.met && len(ev.Missing) != 0 {
				t.Errorf("met, but Missing = %v", ev.Missing)
			}
		})
	}
}

func TestEvaluateCoursesCountOnce(t *testing.T) {
	rec := Record{
		"course-v1:A+B+R1":     certRun(10, true, "", ""),
		"course-v1:A+B+R2":     certRun(20, true, "", ""),
		"course-v1:a+b+R3":     certRun(15, true, "", ""), // org and course compared case-insensitively
		"ccx-v1:A+B+R1+ccx@9":  certRun(30, true, "", ""),
		"course-v1:A+C+R1":     certRun(5, false, "", ""),
		"course-v1:Other+B+R1": certRun(1, true, "", ""),
	}
	q := group(edx.KindCertificate, 2, "course-v1:A+*", "course-v1:a+*")
	if ev := q.Evaluate(rec, 100); ev.Met {
		t.Errorf("two runs of one course met a count of 2: %+v", ev)
	}
	q = group(edx.KindCertificate, 1, "course-v1:A+*")
	ev := q.Evaluate(rec, 100)
	if !ev.Met || ev.At != 10 {
		t.Errorf("Evaluate = %+v, want met at 10 (the earliest counted run)", ev)
	}
	if want := []string{"course-v1:A+B+R2"}; !slices.Equal(ev.Courses, want) {
		t.Errorf("Courses = %v, want the newest counted run %v", ev.Courses, want)
	}
	q.IncludeCCX = true
	ev = q.Evaluate(rec, 100)
	if want := []string{"ccx-v1:A+B+R1+ccx@9"}; !ev.Met || !slices.Equal(ev.Courses, want) {
		t.Errorf("with include_ccx: %+v, want Courses %v", ev, want)
	}
	rec["course-v1:A+C+R1"] = certRun(25, true, "", "")
	q = group(edx.KindCertificate, 2, "course-v1:A+*")
	ev = q.Evaluate(rec, 100)
	if want := []string{"course-v1:A+B+R2", "course-v1:A+C+R1"}; !ev.Met || ev.At != 25 || !slices.Equal(ev.Courses, want) {
		t.Errorf("count 2: %+v, want met at 25 with %v", ev, want)
	}
}

func TestEvaluateAtIsTheOutcomeThatMadeItMet(t *testing.T) {
	rec := Record{
		"course-v1:A+C1+R": certRun(300, true, "", ""),
		"course-v1:A+C2+R": certRun(100, true, "", ""),
		"course-v1:A+C3+R": certRun(200, true, "", ""),
		"course-v1:B+D1+R": enrollRun(50, true, "audit"),
		"course-v1:B+D2+R": enrollRun(400, true, "audit"),
		"course-v1:B+D3+R": enrollRun(60, false, "audit"),
	}
	a := func() *Requirement { return group(edx.KindCertificate, 2, "course-v1:A+*") }
	d := func() *Requirement { return group(edx.KindEnrollment, 1, "course-v1:B+*") }
	cases := []struct {
		name string
		q    *Requirement
		met  bool
		at   int64
	}{
		{"count 2 of 3: the second", a(), true, 200},
		{"count 3 of 3: the third", group(edx.KindCertificate, 3, "course-v1:A+*"), true, 300},
		{"count 4 of 3", group(edx.KindCertificate, 4, "course-v1:A+*"), false, 0},
		{"enrollment count 1: the first", d(), true, 50},
		{"enrollment count 2", group(edx.KindEnrollment, 2, "course-v1:B+*"), true, 400},
		{"all_of: the latest item", &Requirement{AllOf: []*Requirement{a(), d()}}, true, 200},
		{"any_of count 1: the earliest item", &Requirement{Count: 1, AnyOf: []*Requirement{a(), d()}}, true, 50},
		{"any_of count 2: the second", &Requirement{Count: 2, AnyOf: []*Requirement{a(), d(), group(edx.KindCertificate, 1, "course-v1:A+C1+*")}}, true, 200},
		{"any_of with an unmet item", &Requirement{Count: 2, AnyOf: []*Requirement{a(), group(edx.KindCertificate, 1, "course-v1:Z+*")}}, false, 0},
		{"nested", &Requirement{AllOf: []*Requirement{
			d(),
			{Count: 1, AnyOf: []*Requirement{
				group(edx.KindCertificate, 3, "course-v1:A+*"),
				{AllOf: []*Requirement{group(edx.KindCertificate, 1, "course-v1:A+C2+*"), group(edx.KindCertificate, 1, "course-v1:A+C3+*")}},
			}},
		}}, true, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i < 20; i++ { // map order must not matter
				ev := c.q.Evaluate(rec, 1000)
				if ev.Met != c.met || ev.At != c.at {
					t.Fatalf("Evaluate = met %v at %d, want met %v at %d", ev.Met, ev.At, c.met, c.at)
				}
			}
		})
	}
}

func TestEvaluateMissing(t *testing.T) {
	rec := Record{"course-v1:A+B+R": certRun(1, true, "", "")}
	q := &Requirement{AllOf: []*Requirement{
		group(edx.KindCertificate, 1, "course-v1:A+B+*"),
		group(edx.KindCertificate, 2, "course-v1:A+C+*", "course-v1:A+D+*"),
		{Count: 1, AnyOf: []*Requirement{group(edx.KindCertificate, 1, "course-v1:X+*"), group(edx.KindEnrollment, 1, "course-v1:A+B+*")}},
	}}
	ev := q.Evaluate(rec, 10)
	if ev.Met {
		t.Fatal("met")
	}
	want := []string{"course-v1:A+C+*", "course-v1:A+D+*", "course-v1:X+*", "course-v1:A+B+*"}
	if !slices.Equal(ev.Missing, want) {
		t.Errorf("Missing = %v, want %v", ev.Missing, want)
	}
	if want := []string{"course-v1:A+B+R"}; !slices.Equal(ev.Courses, want) {
		t.Errorf("Courses = %v, want %v (the counted ones, met or not)", ev.Courses, want)
	}
}

func TestEvaluateUntil(t *testing.T) {
	const now = 100 * hour
	after := func(course string) *Requirement {
		q := group(edx.KindPassing, 1, course)
		q.RevokeAfter = 10 * time.Hour
		return q
	}
	rec := Record{
		"course-v1:P+A+R": passRun(now-1, false, 1, now-5*hour), // until now+5h
		"course-v1:P+B+R": passRun(now-1, false, 2, now-2*hour), // until now+8h
		"course-v1:P+C+R": passRun(3, true, 3, 0),               // forever
	}
	all := group(edx.KindPassing, 2, "course-v1:P+A+*", "course-v1:P+B+*")
	all.RevokeAfter = 10 * time.Hour
	cases := []struct {
		name      string
		q         *Requirement
		at, until int64
	}{
		{"one course", after("course-v1:P+A+*"), 1, now + 5*hour},
		{"count 2 of two ending", all, 2, now + 5*hour},
		{"any_of count 1 of two ending: the later end", &Requirement{Count: 1, AnyOf: []*Requirement{after("course-v1:P+A+*"), after("course-v1:P+B+*")}}, 1, now + 8*hour},
		{"any_of with one forever", &Requirement{Count: 1, AnyOf: []*Requirement{after("course-v1:P+A+*"), after("course-v1:P+C+*")}}, 1, 0},
		{"all_of with one forever", &Requirement{AllOf: []*Requirement{after("course-v1:P+A+*"), after("course-v1:P+C+*")}}, 3, now + 5*hour},
		{"any_of count 2 of three", &Requirement{Count: 2, AnyOf: []*Requirement{after("course-v1:P+A+*"), after("course-v1:P+B+*"), after("course-v1:P+C+*")}}, 2, now + 8*hour},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := c.q.Evaluate(rec, now)
			if !ev.Met || ev.At != c.at || ev.Until != c.until {
				t.Errorf("Evaluate = %+v, want met at %d until %d", ev, c.at, c.until)
			}
			if ev.Until > 0 {
				if late := c.q.Evaluate(rec, ev.Until); late.Met {
					t.Errorf("still met at Until: %+v", late)
				}
				if early := c.q.Evaluate(rec, ev.Until-1); !early.Met {
					t.Errorf("not met just before Until")
				}
			}
		})
	}
	// Two runs of one course: it counts until the later end, or on when one run passes.
	rec2 := Record{
		"course-v1:P+A+R1": passRun(now-1, false, 1, now-5*hour),
		"course-v1:P+A+R2": passRun(now-1, false, 2, now-2*hour),
	}
	if ev := after("course-v1:P+A+*").Evaluate(rec2, now); !ev.Met || ev.Until != now+8*hour {
		t.Errorf("two runs ending: %+v, want until now+8h", ev)
	}
	rec2["course-v1:P+A+R3"] = passRun(4, true, 4, 0)
	if ev := after("course-v1:P+A+*").Evaluate(rec2, now); !ev.Met || ev.Until != 0 {
		t.Errorf("one run passing: %+v, want no end", ev)
	}
}

func TestKeepsMilestoneRuns(t *testing.T) {
	m, err := Parse([]byte(withHead(
		"    all_of:",
		`      - courses: ["course-v1:A+B+*"]`,
		"      - any_of:",
		`          - courses: ["course-v1:C+*"]`,
		"            include_ccx: true",
	)))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"course-v1:A+B+R":     true,
		"course-v1:A+C+R":     false,
		"course-v1:C+X+R":     true,
		"ccx-v1:C+X+R+ccx@1":  true,
		"ccx-v1:A+B+R+ccx@1":  false, // that item has no include_ccx
		"course-v1:Other+B+R": false,
	} {
		k, err := edx.ParseCourseKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Keeps(k); got != want {
			t.Errorf("Keeps(%s) = %v, want %v", key, got, want)
		}
	}
}
