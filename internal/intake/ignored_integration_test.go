package intake

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
	"github.com/badgebridge/bridge/internal/unmapped"
)

const ignoredMapping = `
badges:
  - name: verified only
    badge_class: ClassVerified-00000001
    when:
      courses: ["course-v1:Org+Course+*"]
      modes: [verified]
`

// Issue 12, "nothing silent": every ignored event is counted by one of a fixed set of reasons;
// an unmapped course key is warned about (once per hour) and listed in the shared top list,
// except for enrollments, which Open edX sends for every course.
func TestIgnoredEventsCountedAndTracked(t *testing.T) {
	rdb := testutil.StartRedis(t).Client(t)
	m, err := rules.Parse([]byte(ignoredMapping))
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{EventRetention: time.Hour})
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store := unmapped.NewStore(rdb, "bb:")
	reg := prometheus.NewRegistry()
	in := &Intake{
		Ledger: l, Mapping: m, Log: log, Metrics: NewMetrics(reg),
		Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute),
		Unmapped: unmapped.New(unmapped.Options{Log: log, Store: store}),
	}
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	n := 0
	event := func(kind edx.Kind, typ, course, mode, status string, uid int64) edx.Event {
		n++
		return edx.Event{ID: fmt.Sprintf("ign-%d", n), Type: typ, Kind: kind, Time: at, UserID: uid,
			Email: fmt.Sprintf("l%d@example.org", uid), Course: mustCourse(course), Mode: mode, Status: status, IsActive: true}
	}
	send := func(ev edx.Event, want string) {
		t.Helper()
		res, err := in.Handle(ctx, ev, "webhook")
		if err != nil || res.Status != StatusIgnored || res.why != want {
			t.Fatalf("%s %s: %+v %v, want ignored (%s)", ev.Type, ev.Course.Raw, res, err, want)
		}
	}
	for i := range 3 {
		send(event(edx.KindCertificate, edx.TypeCertificateCreated, "course-v1:Other+X+1", "honor", "downloadable", int64(10+i)), IgnoredNoRule)
	}
	send(event(edx.KindCertificate, edx.TypeCertificateRevoked, "course-v1:Other+Y+1", "honor", "unavailable", 20), IgnoredNoRule)
	// A mapped course in a mode no rule awards goes to the learner record: not ignored.
	if res, err := in.Handle(ctx, event(edx.KindCertificate, edx.TypeCertificateCreated, "course-v1:Org+Course+1", "honor", "downloadable", 21), "webhook"); err != nil || res.Status == StatusIgnored {
		t.Fatalf("mapped course, other mode: %+v %v", res, err)
	}
	send(event(edx.KindCertificate, edx.TypeCertificateChanged, "course-v1:Org+Course+1", "verified", "requesting", 22), IgnoredStatusNotMapped)
	send(event(edx.KindEnrollment, edx.TypeEnrollmentCreated, "course-v1:Enrolled+Only+1", "audit", "", 23), IgnoredNoRule)

	// A learner erased after their certificate: the older event is refused.
	ev := event(edx.KindCertificate, edx.TypeCertificateCreated, "course-v1:Org+Course+1", "verified", "downloadable", 30)
	if res, err := in.Handle(ctx, ev, "webhook"); err != nil || res.Status != StatusAccepted {
		t.Fatalf("award: %+v %v", res, err)
	}
	if _, err := l.Erase(ctx, 30); err != nil {
		t.Fatal(err)
	}
	send(event(edx.KindCertificate, edx.TypeCertificateCreated, "course-v1:Org+Course+1", "verified", "downloadable", 30), IgnoredErasedLearner)

	// A duplicate of an ignored event is a duplicate, not counted again.
	dup := event(edx.KindCertificate, edx.TypeCertificateCreated, "course-v1:Other+X+1", "honor", "downloadable", 10)
	dup.ID = "ign-1"
	if res, _ := in.Handle(ctx, dup, "webhook"); res.Status != StatusDuplicate {
		t.Fatalf("duplicate: %+v", res)
	}

	want := map[string]float64{IgnoredNoRule: 5, IgnoredStatusNotMapped: 1, IgnoredErasedLearner: 1}
	for reason, n := range want {
		if got := promtest.ToFloat64(in.Metrics.ignored.WithLabelValues(reason)); got != n {
			t.Errorf("bridge_events_ignored_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	if c, _ := promtest.GatherAndCount(reg, "bridge_events_ignored_total"); c != len(IgnoredReasons) {
		t.Errorf("%d series, want one per reason (%d)", c, len(IgnoredReasons))
	}

	warned := logs.String()
	for _, s := range []string{
		"no rule maps course course-v1:Other+X+1: 1 event ignored",
		"no rule maps course course-v1:Other+Y+1: 1 event ignored",
	} {
		if strings.Count(warned, s) != 1 {
			t.Errorf("want one %q in the logs:\n%s", s, warned)
		}
	}
	if strings.Count(warned, "no rule maps") != 2 {
		t.Errorf("want exactly two warnings (not for a mapped course, a mode, a status or an enrollment):\n%s", warned)
	}

	if err := in.Unmapped.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	top, tracked, err := store.Top(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if tracked != 2 || len(top) != 2 || top[0].Course != "course-v1:Other+X+1" || top[0].Count != 3 ||
		top[1].Course != "course-v1:Other+Y+1" || top[1].Count != 1 || top[0].LastSeen.IsZero() {
		t.Fatalf("top = %+v (%d tracked)", top, tracked)
	}
}
