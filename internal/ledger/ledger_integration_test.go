package ledger

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

const course = "course-v1:OpenedX+DemoX+Demo_Course"

// event is one certificate event as the intake hands it to Apply.
type event struct {
	who Learner
	c   rules.Change
}

func intake(uid int64, email string, sig edx.Signal, at int64, names ...string) event {
	in := event{who: Learner{UserID: uid, Email: email, EmailAt: at},
		c: rules.Change{Course: course, Kind: edx.KindCertificate, Signal: sig, At: at}}
	for i, r := range names {
		in.c.Updates = append(in.c.Updates, rules.Update{BadgeClass: "Class1", Rule: r, Signal: sig, At: at,
			Event: edx.KindCertificate, Revoke: true, Order: i})
	}
	return in
}

func apply(ctx context.Context, l *Ledger, in event) ([]RowKey, error) {
	a, err := l.Apply(ctx, in.who, in.c)
	return a.Rows, err
}

// newLedger gives a ledger on a Redis of its own, or, within TestOnRedisCluster, on the shared
// Redis Cluster emptied first.
func newLedger(t *testing.T) *Ledger {
	if onCluster != nil {
		rdb := onCluster.Client(t)
		err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
			return c.FlushAll(ctx).Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		return New(rdb, Options{})
	}
	srv := testutil.StartRedis(t)
	return New(srv.Client(t), Options{})
}

// allKeys lists the keys matching pattern, on every primary of a Cluster.
func allKeys(t *testing.T, l *Ledger, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	cc, ok := l.rdb.(*redis.ClusterClient)
	if !ok {
		return l.rdb.Keys(ctx, pattern).Val()
	}
	var mu sync.Mutex
	var out []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestApplyTransitions(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	k := RowKey{"Class1", 42}

	rows, err := apply(ctx, l, intake(42, "alice@example.com", edx.SignalSupports, 100, "rule"))
	if err != nil || len(rows) != 1 || rows[0] != k {
		t.Fatalf("award: rows=%v err=%v", rows, err)
	}
	rows, _ = apply(ctx, l, intake(42, "alice@example.com", edx.SignalSupports, 100, "rule"))
	if len(rows) != 0 {
		t.Fatalf("duplicate award changed rows %v", rows)
	}
	rows, _ = apply(ctx, l, intake(42, "alice@example.com", edx.SignalSupports, 50, "rule"))
	if len(rows) != 1 {
		t.Fatalf("an older re-send moves the start of support back: rows %v", rows)
	}
	// An e-mail change alone changes no fact: nothing is written, so a sender cannot grow a
	// learner's addresses with events that change nothing.
	rows, _ = apply(ctx, l, intake(42, "Alice.New@Example.com", edx.SignalSupports, 100, "rule"))
	if len(rows) != 0 {
		t.Fatalf("an e-mail change alone must not reconcile again, rows %v", rows)
	}
	r, err := l.Read(ctx, k)
	if err != nil || r == nil {
		t.Fatalf("read: %v", err)
	}
	if r.Version != 2 || r.State != StatePending {
		t.Fatalf("version=%d state=%s, want 2 pending", r.Version, r.State)
	}
	if len(r.Emails) != 1 || r.Email != "alice@example.com" {
		t.Fatalf("emails %v current %q after a no-op event", r.Emails, r.Email)
	}
	// Revocation at the same time as the award wins. It changes the row, so its address is
	// recorded: new awards go to it, and the old one is still looked up.
	rows, _ = apply(ctx, l, intake(42, "Alice.New@Example.com", edx.SignalRevokes, 100, "rule"))
	if len(rows) != 1 {
		t.Fatalf("revoke at equal time: rows %v", rows)
	}
	r, _ = l.Read(ctx, k)
	if len(r.Emails) != 2 || r.Email != "Alice.New@Example.com" {
		t.Fatalf("emails %v current %q", r.Emails, r.Email)
	}
	if held, _ := rules.Desired(r.Facts, 200); held {
		t.Fatal("still held after revocation")
	}
	// An award as old as the revocation arriving after it stays blocked.
	if rows, _ = apply(ctx, l, intake(42, "alice@example.com", edx.SignalSupports, 100, "rule")); len(rows) != 0 {
		t.Fatalf("stale award after revoke changed rows %v", rows)
	}
	total, due, err := l.Owed(ctx, time.Now().Add(time.Minute))
	if err != nil || total != 1 || due != 1 {
		t.Fatalf("owed total=%d due=%d err=%v", total, due, err)
	}
}

func TestRevocationReachesRemovedRule(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	if _, err := apply(ctx, l, intake(7, "bob@example.com", edx.SignalSupports, 100, "old rule")); err != nil {
		t.Fatal(err)
	}
	// The mapping no longer has "old rule": the revoke event matches no rule.
	rows, err := apply(ctx, l, intake(7, "bob@example.com", edx.SignalRevokes, 200))
	if err != nil || len(rows) != 1 {
		t.Fatalf("revocation of a removed rule: rows=%v err=%v", rows, err)
	}
	r, _ := l.Read(ctx, RowKey{"Class1", 7})
	if held, _ := rules.Desired(r.Facts, 300); held {
		t.Fatal("removed rule's award still held after revocation")
	}
}

func TestConcurrentIntakeOneVersionPerChange(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	var wg sync.WaitGroup
	changed := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := apply(ctx, l, intake(9, "c@example.com", edx.SignalSupports, 100, "rule"))
			if err != nil {
				t.Error(err)
			}
			changed <- len(rows)
		}()
	}
	wg.Wait()
	close(changed)
	sum := 0
	for n := range changed {
		sum += n
	}
	if sum != 1 {
		t.Fatalf("20 concurrent identical events changed the row %d times, want 1", sum)
	}
}

func TestLockFencing(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	k := RowKey{"Class1", 1}
	if _, err := apply(ctx, l, intake(1, "d@example.com", edx.SignalSupports, 100, "rule")); err != nil {
		t.Fatal(err)
	}
	tok, ok, err := l.Lock(ctx, k, 100*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	if _, ok2, _ := l.Lock(ctx, k, time.Second); ok2 {
		t.Fatal("second lock granted while the first holds")
	}
	time.Sleep(250 * time.Millisecond) // the lease runs out on the real server
	tok2, ok, _ := l.Lock(ctx, k, time.Second)
	if !ok {
		t.Fatal("lock not granted after the lease expired")
	}
	if err := l.Step(ctx, k, tok, Fields{"state": StateIssued}); !errors.Is(err, ErrLockLost) {
		t.Fatalf("write with an expired token: %v, want ErrLockLost", err)
	}
	if err := l.Renew(ctx, k, tok, time.Second); !errors.Is(err, ErrLockLost) {
		t.Fatalf("renew with an expired token: %v", err)
	}
	r, _ := l.Read(ctx, k)
	// A newer intake while the job works: Finish reports the move and keeps the row owed now.
	if _, err := apply(ctx, l, intake(1, "d@example.com", edx.SignalRevokes, 200, "rule")); err != nil {
		t.Fatal(err)
	}
	moved, err := l.Finish(ctx, k, tok2, r.Version, time.Time{}, Fields{"state": StateIssued})
	if err != nil || !moved {
		t.Fatalf("finish after a newer intake: moved=%v err=%v", moved, err)
	}
	if _, due, _ := l.Owed(ctx, time.Now()); due != 1 {
		t.Fatalf("row not owed now after the version moved (due=%d)", due)
	}
	r2, _ := l.Read(ctx, k)
	moved, err = l.Finish(ctx, k, tok2, r2.Version, time.Time{}, nil)
	if err != nil || moved {
		t.Fatalf("finish at the latest version: moved=%v err=%v", moved, err)
	}
	if total, _, _ := l.Owed(ctx, time.Now()); total != 0 {
		t.Fatalf("owed mark not cleared by a job that saw the latest version (total=%d)", total)
	}
}

func TestClaimDueOncePerPeriod(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	for uid := int64(1); uid <= 3; uid++ {
		if _, err := apply(ctx, l, intake(uid, "e@example.com", edx.SignalSupports, 100, "rule")); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Minute)
	got, err := l.ClaimDue(ctx, later, 10, time.Minute)
	if err != nil || len(got) != 3 {
		t.Fatalf("claim: %v %v", got, err)
	}
	if again, _ := l.ClaimDue(ctx, later, 10, time.Minute); len(again) != 0 {
		t.Fatalf("claimed twice in one period: %v", again)
	}
	if again, _ := l.ClaimDue(ctx, later.Add(2*time.Minute), 10, time.Minute); len(again) != 3 {
		t.Fatalf("not re-claimed after the period: %v", again)
	}
}

func TestErase(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	if _, err := apply(ctx, l, intake(5, "gone@example.com", edx.SignalSupports, 100, "rule")); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordEvent(ctx, EventRecord{ID: "e5", UserID: 5, Status: "accepted"}); err != nil {
		t.Fatal(err)
	}
	erased, err := l.Erase(ctx, 5)
	if err != nil || len(erased.Rows) != 1 || erased.Events != 1 {
		t.Fatalf("erase: %+v %v", erased, err)
	}
	if r, _ := l.Read(ctx, RowKey{"Class1", 5}); r != nil {
		t.Fatal("row survived the erase")
	}
	if rec, _ := l.FindEvent(ctx, "e5"); rec != nil {
		t.Fatal("event record survived the erase")
	}
	if rows, _ := l.List(ctx, Filter{Email: "gone@example.com"}); len(rows) != 0 {
		t.Fatal("e-mail index survived the erase")
	}
	if total, _, _ := l.Owed(ctx, time.Now()); total != 0 {
		t.Fatal("owed mark survived the erase")
	}
	if n := allKeys(t, l, "bb:*"); len(n) != 1 || n[0] != l.erasedKey(5) {
		t.Fatalf("keys left after erase (want only the tombstone): %v", n)
	}
	if ttl := l.rdb.TTL(ctx, l.erasedKey(5)).Val(); ttl <= 0 {
		t.Fatalf("the tombstone must expire, TTL %v", ttl)
	}
}

// A validly signed event captured before an erase and replayed after it must not bring the
// learner back; an event newer than the erasure is a new fact and is recorded.
func TestEraseTombstoneRefusesReplays(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	before := time.Now().Add(-time.Minute).UnixMicro()
	if _, err := apply(ctx, l, intake(6, "six@example.com", edx.SignalSupports, before, "rule")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Erase(ctx, 6); err != nil {
		t.Fatal(err)
	}
	_, err := apply(ctx, l, intake(6, "six@example.com", edx.SignalSupports, before, "rule"))
	var refused *ErasedError
	if !errors.As(err, &refused) || refused.UserID != 6 {
		t.Fatalf("replayed event after erase: want *ErasedError, got %v", err)
	}
	if n := allKeys(t, l, "bb:*6*"); len(n) != 1 {
		t.Fatalf("the refused replay wrote keys: %v", n)
	}
	rows, err := apply(ctx, l, intake(6, "six@example.com", edx.SignalSupports, time.Now().Add(time.Second).UnixMicro(), "rule"))
	if err != nil || len(rows) != 1 {
		t.Fatalf("an event newer than the erasure: rows %v, err %v", rows, err)
	}
}
