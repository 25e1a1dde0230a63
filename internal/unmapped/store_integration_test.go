package unmapped

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/testutil"
)

// Counts from several processes add up in one shared list, most ignored first, with the latest
// last-seen time.
func TestIntegrationStoreSharedTop(t *testing.T) {
	rdb := testutil.StartRedis(t).Client(t)
	ctx := context.Background()
	at := time.Date(2024, 5, 27, 12, 0, 0, 123456000, time.UTC)
	a, b := NewStore(rdb, "bb:"), NewStore(rdb, "bb:")
	if err := a.Add(ctx, []Count{{"course-v1:A+X+1", 3, at}, {"course-v1:B+X+1", 1, at}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []Count{{"course-v1:B+X+1", 5, at.Add(time.Minute)}, {"course-v1:A+X+1", 1, at.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	top, n, err := a.Top(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []Course{
		{Course: "course-v1:B+X+1", Count: 6, LastSeen: at.Add(time.Minute)},
		{Course: "course-v1:A+X+1", Count: 4, LastSeen: at},
	}
	if n != 2 || fmt.Sprint(top) != fmt.Sprint(want) {
		t.Fatalf("top = %v (%d), want %v", top, n, want)
	}
	// The keys share one hash tag (one Cluster slot).
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if k != "bb:{unmapped}:courses" && k != "bb:{unmapped}:courses:meta" {
			t.Errorf("unexpected key %q", k)
		}
	}
}

// At the cap a new course key replaces the least counted one and inherits its count as a
// possible overcount (Space-Saving), so the list never grows past the cap and a frequent new
// key still gets in.
func TestIntegrationStoreBounded(t *testing.T) {
	rdb := testutil.StartRedis(t).Client(t)
	ctx := context.Background()
	s := NewStore(rdb, "bb:")
	s.cap = 3
	at := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Add(ctx, []Count{{"k1", 10, at}, {"k2", 5, at}, {"k3", 2, at}}))
	must(s.Add(ctx, []Count{{"k4", 1, at}}))
	top, n, err := s.Top(ctx, 10)
	must(err)
	if n != 3 || len(top) != 3 {
		t.Fatalf("%d tracked: %v", n, top)
	}
	if top[2].Course != "k4" || top[2].Count != 3 || top[2].CountError != 2 {
		t.Fatalf("new key at the cap: %+v, want k4 count 3 error 2", top[2])
	}
	if hlen, _ := rdb.HLen(ctx, "bb:{unmapped}:courses:meta").Result(); hlen != 3 {
		t.Fatalf("meta keeps %d entries", hlen)
	}
	// The inherited error stays with the key as it grows.
	must(s.Add(ctx, []Count{{"k4", 10, at}}))
	top, _, _ = s.Top(ctx, 1)
	if top[0].Course != "k4" || top[0].Count != 13 || top[0].CountError != 2 {
		t.Fatalf("k4 after more events: %+v", top[0])
	}

	// The full 500 with many processes adding at once stays at the cap.
	s.cap = StoreCap
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []Count
			for i := range 400 {
				batch = append(batch, Count{fmt.Sprintf("course-v1:P%d+C%d+1", p, i), int64(i%7 + 1), at})
			}
			if err := s.Add(ctx, batch); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n, _ := rdb.ZCard(ctx, "bb:{unmapped}:courses").Result(); n != StoreCap {
		t.Fatalf("%d members, want the cap %d", n, StoreCap)
	}
	if n, _ := rdb.HLen(ctx, "bb:{unmapped}:courses:meta").Result(); n != StoreCap {
		t.Fatalf("meta holds %d entries, want %d", n, StoreCap)
	}
}

// Run writes what the tracker collected, and once more when it stops.
func TestIntegrationTrackerFlushes(t *testing.T) {
	rdb := testutil.StartRedis(t).Client(t)
	s := NewStore(rdb, "bb:")
	tr := New(Options{Store: s, FlushEvery: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	tr.Ignored("course-v1:A+B+C")
	tr.Ignored("course-v1:A+B+C")
	deadline := time.Now().Add(5 * time.Second)
	for {
		top, _, err := s.Top(context.Background(), 10)
		if err == nil && len(top) == 1 && top[0].Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not written: %v %v", top, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr.Ignored("course-v1:Last+B+C")
	cancel()
	<-done
	if top, _, _ := s.Top(context.Background(), 10); len(top) != 2 {
		t.Fatalf("the last counts were not written when Run stopped: %v", top)
	}
}
