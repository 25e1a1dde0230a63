package ledger

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/testutil"
)

// rowReads counts the row hashes a client reads, to prove a page never reads every row.
type rowReads struct{ n atomic.Int64 }

func (h *rowReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *rowReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *rowReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}
func (h *rowReads) count(c redis.Cmder) {
	if c.Name() == "hgetall" && len(c.Args()) > 1 && strings.Contains(fmt.Sprint(c.Args()[1]), "row:") {
		h.n.Add(1)
	}
}

// seedRows writes n rows straight into Redis (as Apply and the jobs would leave them), every
// tenth parked, in a few pipelined round trips.
func seedRows(t *testing.T, l *Ledger, n int) {
	t.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 5000 {
		_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+5000, n); i++ {
				k := RowKey{fmt.Sprintf("Class%d", i%3), int64(i + 1)}
				state := StateIssued
				tag := l.bucket(k.UserID)
				if i%10 == 0 {
					state = StateFailed
					p.ZAdd(ctx, l.failedIndexKey(tag), redis.Z{Member: k.String()})
				}
				p.HSet(ctx, l.rowKey(k), "state", state, "version", 1)
				p.ZAdd(ctx, l.rowIndexKey(tag), redis.Z{Member: k.String()})
				p.SAdd(ctx, l.userRowsKey(k.UserID), k.BadgeClass)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// failedRows counts the failed index of every bucket.
func failedRows(ctx context.Context, l *Ledger) int64 {
	var n int64
	for _, tag := range l.tags {
		n += l.rdb.ZCard(ctx, l.failedIndexKey(tag)).Val()
	}
	return n
}

// The Cluster layout pages through one index per bucket; it runs here on one Redis.
func TestPageAt50000Rows(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 rows")
	}
	for _, buckets := range []int{1, ClusterBuckets} {
		t.Run(fmt.Sprintf("%d buckets", buckets), func(t *testing.T) { pageAt50000Rows(t, buckets) })
	}
}

func pageAt50000Rows(t *testing.T, buckets int) {
	ctx := context.Background()
	srv := testutil.StartRedis(t)
	reads := &rowReads{}
	rdb := srv.Client(t)
	rdb.AddHook(reads)
	l := New(rdb, Options{Buckets: buckets})
	const total = 50000
	seedRows(t, l, total)

	// Every row once, in key order, 1,000 a page.
	seen := map[RowKey]bool{}
	last, pages := "", 0
	f := Filter{Limit: 1000}
	for {
		p, err := l.Page(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Rows) > 1000 {
			t.Fatalf("page of %d rows", len(p.Rows))
		}
		for _, r := range p.Rows {
			if seen[r.Key] || r.Key.String() <= last {
				t.Fatalf("row %s twice or out of order", r.Key)
			}
			seen[r.Key], last = true, r.Key.String()
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	if len(seen) != total || pages > total/1000+1 {
		t.Fatalf("paged %d rows in %d pages, want %d in about %d", len(seen), pages, total, total/1000)
	}

	// A page of parked rows reads only parked rows (their own index), not the 45,000 others.
	reads.n.Store(0)
	p, err := l.Page(ctx, Filter{State: StateFailed, Limit: 100})
	if err != nil || len(p.Rows) != 100 || p.Next == "" {
		t.Fatalf("failures page: %d rows, next %q, %v", len(p.Rows), p.Next, err)
	}
	if n := reads.n.Load(); n > 150 {
		t.Fatalf("a page of 100 failures read %d rows", n)
	}
	// A filter that matches nothing still reads a bounded number of rows per page.
	reads.n.Store(0)
	p, err = l.Page(ctx, Filter{State: StateRevoked, Limit: 10})
	if err != nil || len(p.Rows) != 0 || p.Next == "" {
		t.Fatalf("no match: %d rows, next %q, %v", len(p.Rows), p.Next, err)
	}
	if n := reads.n.Load(); n > int64(scanBudget(10)+500) {
		t.Fatalf("one page read %d rows, over the budget %d", n, scanBudget(10))
	}
	// One badge class is one lexical range.
	p, err = l.Page(ctx, Filter{BadgeClass: "Class1", Limit: 1000})
	if err != nil || len(p.Rows) != 1000 {
		t.Fatalf("class page: %d rows, %v", len(p.Rows), err)
	}
	for _, r := range p.Rows {
		if r.Key.BadgeClass != "Class1" {
			t.Fatalf("row %s in a Class1 page", r.Key)
		}
	}
	if _, err := l.Page(ctx, Filter{Cursor: "%%%"}); err != ErrBadCursor {
		t.Fatalf("bad cursor: %v", err)
	}

	if n, err := l.Parked(ctx); err != nil || n != total/10 {
		t.Fatalf("Parked counts %d (%v), want %d", n, err, total/10)
	}
	// Retry in batches puts every parked row back, and the index empties.
	put := 0
	for {
		p, err := l.Page(ctx, Filter{State: StateFailed, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		keys := make([]RowKey, len(p.Rows))
		for i, r := range p.Rows {
			keys[i] = r.Key
		}
		n, err := l.Retry(ctx, keys...)
		if err != nil {
			t.Fatal(err)
		}
		put += n
		if p.Next == "" {
			break
		}
	}
	if n, err := l.Parked(ctx); err != nil || n != 0 {
		t.Fatalf("Parked counts %d (%v) after every retry", n, err)
	}
	if put != total/10 || failedRows(ctx, l) != 0 {
		t.Fatalf("retried %d of %d; failed index holds %d", put, total/10, failedRows(ctx, l))
	}
}

func TestRepairIndexes(t *testing.T) {
	ctx := context.Background()
	srv := testutil.StartRedis(t)
	l := New(srv.Client(t), Options{})
	seedRows(t, l, 3000)
	// Damage: rows missing from both indexes (as a version before them left them, with the old
	// unordered set), a failed entry for a row that is no longer failed, entries of erased rows.
	l.rdb.Del(ctx, l.rowIndexKey(""))
	l.rdb.SAdd(ctx, l.legacyRowsKey(), "Class0:1")
	l.rdb.HSet(ctx, l.rowKey(RowKey{"Class0", 1}), "state", StateIssued)
	l.rdb.ZAdd(ctx, l.failedIndexKey(""), redis.Z{Member: "Gone:9"})
	l.rdb.ZAdd(ctx, l.rowIndexKey(""), redis.Z{Member: "Gone:9"}, redis.Z{Member: "Gone:10"})

	var c RepairCursor
	for i := 0; ; i++ {
		next, _, done, err := l.RepairIndexes(ctx, c, 200)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if i > 1000 {
			t.Fatal("the repair never finished a pass")
		}
		c = next
	}
	if n := l.rdb.ZCard(ctx, l.rowIndexKey("")).Val(); n != 3000 {
		t.Fatalf("row index holds %d, want 3000", n)
	}
	if n := l.rdb.ZCard(ctx, l.failedIndexKey("")).Val(); n != 299 {
		t.Fatalf("failed index holds %d, want 299 (300 seeded, one no longer failed)", n)
	}
	if l.rdb.Exists(ctx, l.legacyRowsKey()).Val() != 0 {
		t.Fatal("the legacy set of rows outlived a whole repair pass")
	}
}

// The reconcile's writes keep the failed index: parking adds the row, any other state removes it.
func TestWriteKeepsFailedIndex(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	k := RowKey{"Class1", 9}
	if _, err := apply(ctx, l, intake(9, "nine@example.com", edx.SignalSupports, 100, "rule")); err != nil {
		t.Fatal(err)
	}
	tok, ok, err := l.Lock(ctx, k, 10e9)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := l.Step(ctx, k, tok, Fields{"state": StateFailed, "reason": "refused"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := l.Page(ctx, Filter{State: StateFailed}); len(p.Rows) != 1 {
		t.Fatalf("parked row not listed: %v", p.Rows)
	}
	if err := l.Step(ctx, k, tok, Fields{"state": StateIssued}); err != nil {
		t.Fatal(err)
	}
	if n := failedRows(ctx, l); n != 0 {
		t.Fatalf("issued row still in the failed index")
	}
}

// Rows written before times were stored in microseconds (milliseconds then) read the same.
func TestRowTimesReadBothUnits(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	at := time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.UTC)
	k := RowKey{"Class1", 3}
	l.rdb.HSet(ctx, l.rowKey(k), "state", StatePending, "attempt_at", at.UnixMilli(), "next_check", at.UnixMicro(), "updated_at", 0)
	r, err := l.Read(ctx, k)
	if err != nil || r == nil {
		t.Fatal(r, err)
	}
	if !r.AttemptAt.Equal(at.Truncate(time.Millisecond)) || !r.NextCheck.Equal(at) || !r.UpdatedAt.IsZero() {
		t.Fatalf("attempt %v, next %v, updated %v; want %v, %v and none", r.AttemptAt, r.NextCheck, r.UpdatedAt, at.Truncate(time.Millisecond), at)
	}
}
