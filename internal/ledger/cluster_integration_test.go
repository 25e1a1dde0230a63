package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/testutil"
)

// onCluster, while TestOnRedisCluster runs, makes newLedger use this Redis Cluster.
var onCluster *testutil.Cluster

// The ledger's tests again, on a real Redis Cluster of three primaries with a replica each:
// every multi-key step must stay within one slot (a CROSSSLOT error fails them), and what spans
// buckets (claims, paging, the outbox, the learner walk) must see every shard.
func TestOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	onCluster = testutil.StartCluster(t)
	t.Cleanup(func() { onCluster = nil })
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"ApplyTransitions", TestApplyTransitions},
		{"RevocationReachesRemovedRule", TestRevocationReachesRemovedRule},
		{"ConcurrentIntakeOneVersionPerChange", TestConcurrentIntakeOneVersionPerChange},
		{"LockFencing", TestLockFencing},
		{"ClaimDueOncePerPeriod", TestClaimDueOncePerPeriod},
		{"Erase", TestErase},
		{"EraseTombstoneRefusesReplays", TestEraseTombstoneRefusesReplays},
		{"JobSlotHoldsOneJob", TestJobSlotHoldsOneJob},
		{"JobSlotNeverCreatesARow", TestJobSlotNeverCreatesARow},
		{"StartJobEmptiesTheSlotWithTheLock", TestStartJobEmptiesTheSlotWithTheLock},
		{"WriteKeepsFailedIndex", TestWriteKeepsFailedIndex},
		{"ClaimDueAcrossBuckets", TestClaimDueAcrossBuckets},
		{"LearnersWalksEveryShard", TestLearnersWalksEveryShard},
		{"OutboxAcrossBuckets", TestOutboxAcrossBuckets},
		{"EventsAcrossBuckets", TestEventsAcrossBuckets},
	} {
		t.Run(tc.name, tc.run)
	}
	if l := newLedger(t); !l.Sharded() {
		t.Fatal("a ledger on a cluster client must use the Cluster layout")
	}
}

// learners applies one award for each of uids 1..n.
func learners(t *testing.T, l *Ledger, n int) {
	t.Helper()
	for uid := int64(1); uid <= int64(n); uid++ {
		if _, err := apply(context.Background(), l, intake(uid, fmt.Sprintf("l%d@example.com", uid), edx.SignalSupports, 100, "rule")); err != nil {
			t.Fatal(err)
		}
	}
}

// A claim takes exactly its limit while more is due, and what is left the next time, wherever
// the rows' buckets are.
func TestClaimDueAcrossBuckets(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	learners(t, l, 600)
	later := time.Now().Add(time.Minute)
	seen := map[RowKey]bool{}
	for _, want := range []int{250, 250, 100, 0} {
		got, err := l.ClaimDue(ctx, later, 250, time.Hour)
		if err != nil || len(got) != want {
			t.Fatalf("claim: %d rows (%v), want %d", len(got), err, want)
		}
		for _, k := range got {
			if seen[k] {
				t.Fatalf("row %s claimed twice in one period", k)
			}
			seen[k] = true
		}
	}
	if total, due, _ := l.Owed(ctx, later); total != 600 || due != 0 {
		t.Fatalf("owed %d, due %d after claiming all: want 600 and 0", total, due)
	}
}

// Every learner with a record comes out of the walk, a small batch at a time.
func TestLearnersWalksEveryShard(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	const n = 300
	for uid := int64(1); uid <= n; uid++ {
		if err := l.rdb.HSet(ctx, l.recordKey(uid), course, `{}`).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]bool{}
	var cursor uint64
	for calls := 0; ; calls++ {
		uids, next, err := l.Learners(ctx, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range uids {
			seen[u] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
		if calls > 10*n {
			t.Fatal("the walk never ended")
		}
	}
	if len(seen) != n {
		t.Fatalf("walk found %d of %d learners", len(seen), n)
	}
}

// Announcements of learners in many buckets come out oldest first, and go once removed.
func TestOutboxAcrossBuckets(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	const n = 40
	for uid := int64(1); uid <= n; uid++ {
		a := Announcement{Kind: AnnounceAwarded, Row: RowKey{"Class1", uid}, EntityID: fmt.Sprint("A", uid), At: time.Now()}
		if err := l.AppendOutbox(ctx, []Announcement{a}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := l.OutboxStatus(ctx)
	if err != nil || st.Len != n || st.Oldest.IsZero() {
		t.Fatalf("outbox status %+v (%v), want %d entries", st, err, n)
	}
	got, err := l.ReadOutbox(ctx, 25)
	if err != nil || len(got) != 25 {
		t.Fatalf("read %d entries (%v), want 25", len(got), err)
	}
	for i, e := range got {
		if e.Err != nil || e.Row.UserID != int64(i+1) {
			t.Fatalf("entry %d is of user %d (%v): want the order they were written", i, e.Row.UserID, e.Err)
		}
	}
	ids := make([]string, len(got))
	for i, e := range got {
		ids[i] = e.ID
	}
	if err := l.RemoveOutbox(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	rest, _ := l.ReadOutbox(ctx, 100)
	if len(rest) != n-25 || rest[0].Row.UserID != 26 {
		t.Fatalf("%d entries left after removing 25, want %d from user 26", len(rest), n-25)
	}
	if err := l.RemoveOutbox(ctx, "no-such-id"); l.Sharded() && err == nil {
		t.Fatal("a malformed entry id must be refused on a Cluster")
	}
}

// An event record is found by id alone (the admin look-up) and by its learner (the intake); an
// id reused with other content is caught by its claim on a Cluster.
func TestEventsAcrossBuckets(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	rec := EventRecord{ID: "ev-77", Type: "t", Status: "accepted", UserID: 77, Digest: "d1"}
	if err := l.RecordEvent(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := l.FindEvent(ctx, "ev-77"); err != nil || got == nil || got.UserID != 77 {
		t.Fatalf("find by id: %+v %v", got, err)
	}
	if got, err := l.SeenEvent(ctx, 77, "ev-77"); err != nil || got == nil {
		t.Fatalf("seen by its learner: %+v %v", got, err)
	}
	if got, _ := l.FindEvent(ctx, "ev-78"); got != nil {
		t.Fatalf("an unknown id found: %+v", got)
	}
	for _, c := range []struct {
		digest   string
		conflict bool
	}{{"d1", false}, {"d1", false}, {"d2", true}} {
		other, err := l.ClaimEvent(ctx, "ev-77", c.digest)
		if err != nil {
			t.Fatal(err)
		}
		if wantOther := c.conflict && l.Sharded(); (other != nil) != wantOther || (other != nil && other.Digest != "d1") {
			t.Fatalf("claim with %s: %+v, want a conflict %v", c.digest, other, wantOther)
		}
	}
}
