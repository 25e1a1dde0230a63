package reevaluate

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

const pathway = testutil.TestMapping + `
  - name: pathway
    badge_class: ClassPathway-000000001
    when:
      milestone:
        courses: ["course-v1:Org+Course+*", "course-v1:Org+Other+*"]
        count: 2
`

// A rule added later is awarded to everyone who already qualifies, and only to them: the dry run
// writes nothing, the applied run owes one reconcile per qualifying learner, and a second run
// changes nothing.
func TestReevaluateAwardsANewRuleOnce(t *testing.T) {
	ctx := context.Background()
	rdb := testutil.StartRedis(t).Client(t)
	l := ledger.New(rdb, ledger.Options{})
	old, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		t.Fatal(err)
	}
	in := &intake.Intake{Ledger: l, Mapping: old, Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute), RecordAll: true}
	t0 := time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)
	other, _ := edx.ParseCourseKey("course-v1:Org+Other+2024")
	for uid := int64(1); uid <= 3; uid++ {
		ev := testutil.CertEvent("a", uid, "l@example.org", edx.TypeCertificateCreated, "downloadable", t0)
		ev.ID = ""
		if _, err := in.Handle(ctx, ev, "test"); err != nil {
			t.Fatal(err)
		}
		if uid == 3 {
			continue // learner 3 has only one of the two courses
		}
		ev.Course, ev.Time = other, t0.Add(time.Duration(uid)*time.Hour)
		if _, err := in.Handle(ctx, ev, "test"); err != nil {
			t.Fatal(err)
		}
	}
	owedBefore, _, _ := l.Owed(ctx, time.Now())

	m, err := rules.Parse([]byte(pathway))
	if err != nil {
		t.Fatal(err)
	}
	in.Mapping = m
	run := func(apply bool) (Summary, string) {
		var out bytes.Buffer
		sum, err := Run(ctx, Options{Ledger: l, Intake: in, Mapping: m, Apply: apply, Out: &out})
		if err != nil {
			t.Fatal(err)
		}
		return sum, out.String()
	}
	sum, out := run(false)
	if sum.Learners != 3 || sum.Rows != 2 || !strings.Contains(out, "would be owed") {
		t.Fatalf("dry run: %+v\n%s", sum, out)
	}
	if owed, _, _ := l.Owed(ctx, time.Now()); owed != owedBefore {
		t.Fatalf("the dry run owed %d rows more", owed-owedBefore)
	}
	sum, out = run(true)
	if sum.Rows != 2 || sum.Changed != 2 {
		t.Fatalf("applied run: %+v\n%s", sum, out)
	}
	for uid := int64(1); uid <= 2; uid++ {
		r, _ := l.Read(ctx, ledger.RowKey{BadgeClass: "ClassPathway-000000001", UserID: uid})
		if r == nil || len(r.Facts) != 1 || r.Facts[0].First != rules.Micros(t0.Add(time.Duration(uid)*time.Hour)) {
			t.Fatalf("learner %d pathway row: %+v", uid, r)
		}
	}
	if sum, out := run(true); sum.Rows != 0 {
		t.Fatalf("second run changed something: %+v\n%s", sum, out)
	}
	if _, err := Run(ctx, Options{Ledger: l, Intake: in, Mapping: m, Rule: "nope", Out: &bytes.Buffer{}}); err == nil {
		t.Fatal("an unknown --rule must be refused")
	}
}
