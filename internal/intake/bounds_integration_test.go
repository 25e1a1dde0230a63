package intake

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

// Documented in the README's "Sizing" table: what intake may leave in Redis.
const (
	// An event that changes nothing leaves its event record and its learner's index of event
	// records, both expiring after BRIDGE_EVENT_RETENTION: at most two keys, no key that stays.
	keysPerIgnoredEvent = 2
	// The largest key one learner can grow, whatever the number of events: the event index is
	// capped at ledger.MaxEventsPerLearner ids (about 64 bytes each).
	maxLearnerKeyBytes = 128 << 10
)

type keyStat struct {
	key   string
	bytes int64
	ttl   time.Duration
}

// keyStats reads every key with its memory usage and TTL (a test-sized keyspace: SCAN is fine).
func keyStats(t *testing.T, rdb *redis.Client) []keyStat {
	t.Helper()
	ctx := context.Background()
	var out []keyStat
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		out = append(out, keyStat{key: k, bytes: rdb.MemoryUsage(ctx, k).Val(), ttl: rdb.PTTL(ctx, k).Val()})
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].bytes > out[j].bytes })
	return out
}

func newBoundsIntake(t *testing.T) (*Intake, *redis.Client) {
	t.Helper()
	srv := testutil.StartRedis(t)
	rdb := srv.Client(t)
	m, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{EventRetention: time.Hour})
	enq := queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute)
	return &Intake{Ledger: l, Mapping: m, Enqueuer: enq, Log: slog.New(slog.DiscardHandler)}, rdb
}

func TestIgnoredEventsLeaveOnlyExpiringRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events")
	}
	in, rdb := newBoundsIntake(t)
	ctx := context.Background()
	unmapped, _ := edx.ParseCourseKey("course-v1:Other+Course+Run")
	at := time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)
	const n = 10000
	for i := 0; i < n; i++ {
		// Each learner new, each with an address of its own: an unmapped award, a revocation of
		// a course nobody holds, a transient status.
		ev := edx.Event{ID: fmt.Sprintf("ign-%d", i), Kind: edx.KindCertificate, Time: at, UserID: int64(10 + i),
			Email: fmt.Sprintf("learner%d@example.org", i), Course: unmapped, Mode: "honor"}
		switch i % 3 {
		case 0:
			ev.Type, ev.Status = edx.TypeCertificateCreated, "downloadable"
		case 1:
			ev.Type, ev.Status = edx.TypeCertificateRevoked, "unavailable"
		case 2:
			ev.Type, ev.Status, ev.Course = edx.TypeCertificateChanged, "generating", mustCourse(testutil.TestCourse)
			ev.Status = "requesting" // transient: neither awards nor revokes
		}
		res, err := in.Handle(ctx, ev, "webhook")
		if err != nil || res.Status != StatusIgnored {
			t.Fatalf("event %d: %+v %v", i, res, err)
		}
	}
	stats := keyStats(t, rdb)
	if len(stats) > keysPerIgnoredEvent*n {
		t.Fatalf("%d ignored events left %d keys, over %d", n, len(stats), keysPerIgnoredEvent*n)
	}
	for _, s := range stats {
		if s.ttl < 0 {
			t.Fatalf("key %s has no expiry after events that changed nothing", s.key)
		}
		if strings.Contains(s.key, ":email") || strings.Contains(s.key, ":rows") {
			t.Fatalf("an ignored event wrote learner data: %s", s.key)
		}
	}
	t.Logf("%d ignored events: %d keys, largest %s (%d bytes)", n, len(stats), stats[0].key, stats[0].bytes)
}

func TestOneLearnersKeysStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events")
	}
	in, rdb := newBoundsIntake(t)
	ctx := context.Background()
	at := time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)
	const n = 10000
	for i := 0; i < n; i++ {
		typ, status := edx.TypeCertificateCreated, "downloadable"
		if i%2 == 1 {
			typ, status = edx.TypeCertificateRevoked, "unavailable"
		}
		ev := testutil.CertEvent(fmt.Sprintf("one-%d", i), 77, "only@example.org", typ, status, at.Add(time.Duration(i)*time.Second))
		if _, err := in.Handle(ctx, ev, "webhook"); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	stats := keyStats(t, rdb)
	learner := 0
	for _, s := range stats {
		if strings.Contains(s.key, ":77") || strings.HasPrefix(s.key, "bb:evt:") {
			learner++
		}
	}
	// Rows, facts and the learner's own keys, plus at most MaxEventsPerLearner event records.
	if max := 10 + ledger.MaxEventsPerLearner; learner > max {
		t.Fatalf("one learner's %d events left %d keys, over %d", n, learner, max)
	}
	if stats[0].bytes > maxLearnerKeyBytes {
		t.Fatalf("largest key %s is %d bytes, over %d", stats[0].key, stats[0].bytes, maxLearnerKeyBytes)
	}
	if n := rdb.ZCard(ctx, "bb:user:77:evidx").Val(); n != ledger.MaxEventsPerLearner {
		t.Fatalf("event index holds %d ids, want the cap %d", n, ledger.MaxEventsPerLearner)
	}
	t.Logf("one learner, %d events: %d keys of theirs, largest %s (%d bytes)", n, learner, stats[0].key, stats[0].bytes)
}

func mustCourse(s string) edx.CourseKey {
	k, err := edx.ParseCourseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// TestSizing measures what the README's "Sizing" table reports: run with -v to print it.
func TestSizing(t *testing.T) {
	in, rdb := newBoundsIntake(t)
	ctx := context.Background()
	at := time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)
	const learners = 1000
	before := usedMemory(t, rdb)
	for i := 0; i < learners; i++ {
		ev := testutil.CertEvent(fmt.Sprintf("size-%d", i), int64(5000+i), fmt.Sprintf("learner.%d@example.org", i),
			edx.TypeCertificateCreated, "downloadable", at)
		ev.Name, ev.Username = "Ada Lovelace", fmt.Sprintf("learner%d", i)
		if _, err := in.Handle(ctx, ev, "webhook"); err != nil {
			t.Fatal(err)
		}
	}
	after := usedMemory(t, rdb)
	byKind := map[string][2]int64{} // kind → keys, bytes
	for _, s := range keyStats(t, rdb) {
		kind := s.key
		switch {
		case strings.HasPrefix(kind, "asynq:"):
			kind = "asynq (one waiting job per owed row)"
		case strings.HasPrefix(kind, "bb:evt:"):
			kind = "bb:evt:<id> (event record, expires)"
		default:
			kind = strings.Map(func(r rune) rune {
				if r >= '0' && r <= '9' {
					return -1
				}
				return r
			}, kind)
		}
		v := byKind[kind]
		byKind[kind] = [2]int64{v[0] + 1, v[1] + s.bytes}
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("%d learners, one awarded row and one event each: used_memory grew %d bytes (%d per learner)",
		learners, after-before, (after-before)/learners)
	t.Logf("| key | keys | bytes per learner |")
	for _, k := range kinds {
		t.Logf("| %s | %d | %d |", k, byKind[k][0], byKind[k][1]/learners)
	}
	if per := (after - before) / learners; per > 8<<10 {
		t.Fatalf("%d bytes per learner with one row: more than the README's sizing allows", per)
	}
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info := rdb.Info(context.Background(), "memory").Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}
