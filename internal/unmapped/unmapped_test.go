package unmapped

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.Write(p) }

// take returns the messages logged since the last call.
func (l *lines) take(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if s == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("not JSON: %q", s)
		}
		out = append(out, m)
	}
	l.buf.Reset()
	return out
}

func newTracker() (*Tracker, *clock, *lines) {
	c := &clock{t: time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)}
	l := &lines{}
	return New(Options{Log: slog.New(slog.NewJSONHandler(l, nil)), Now: c.now}), c, l
}

func msgs(logged []map[string]any) []string {
	var out []string
	for _, m := range logged {
		out = append(out, fmt.Sprint(m["msg"]))
	}
	return out
}

// The first ignored event of a course key warns at once; the next warning comes no sooner than
// an hour later and counts every event since the last one.
func TestWarnsOncePerCourseAndHour(t *testing.T) {
	tr, c, l := newTracker()
	const key = "course-v1:OpenedX+DemoX+2024"
	tr.Ignored(key)
	got := l.take(t)
	if len(got) != 1 || got[0]["msg"] != "no rule maps course "+key+": 1 event ignored" || got[0]["level"] != "WARN" ||
		got[0]["course"] != key || got[0]["ignored"] != float64(1) {
		t.Fatalf("first event: %v", got)
	}
	for range 41 {
		c.add(time.Minute)
		tr.Ignored(key)
	}
	if got := l.take(t); len(got) != 0 {
		t.Fatalf("warned again within the hour: %v", msgs(got))
	}
	c.add(20 * time.Minute) // 61 minutes after the first warning
	tr.Ignored(key)
	got = l.take(t)
	if len(got) != 1 || got[0]["msg"] != "no rule maps course "+key+": 42 events ignored" || got[0]["since"] != "2024-05-27T12:00:00Z" {
		t.Fatalf("after the hour: %v", got)
	}
	// Another key has its own hour.
	tr.Ignored("course-v1:Other+C+1")
	if got := l.take(t); len(got) != 1 {
		t.Fatalf("second key: %v", msgs(got))
	}
}

// Events counted after a warning are reported by the sweep once the hour is over, even when no
// later event comes; a key with nothing to report is forgotten.
func TestSweepReportsWhatNoEventBringsUp(t *testing.T) {
	tr, c, l := newTracker()
	tr.Ignored("course-v1:A+B+C")
	tr.Ignored("course-v1:A+B+C")
	tr.Ignored("course-v1:A+B+C")
	tr.Ignored("course-v1:Quiet+B+C")
	l.take(t)
	c.add(30 * time.Minute)
	tr.Sweep()
	if got := l.take(t); len(got) != 0 {
		t.Fatalf("swept within the hour: %v", msgs(got))
	}
	c.add(31 * time.Minute)
	tr.Sweep()
	got := msgs(l.take(t))
	if len(got) != 1 || got[0] != "no rule maps course course-v1:A+B+C: 2 events ignored" {
		t.Fatalf("sweep: %v", got)
	}
	if _, ok := tr.warn["course-v1:Quiet+B+C"]; ok {
		t.Error("a key with nothing to report is still remembered")
	}
	if _, ok := tr.warn["course-v1:A+B+C"]; !ok {
		t.Error("a key just warned about is forgotten: its next event would warn at once")
	}
}

// Memory is bounded: beyond MaxWarnKeys keys warned about within the hour, further keys are
// counted together and reported in one line per hour.
func TestWarningsBounded(t *testing.T) {
	tr, c, l := newTracker()
	for i := range MaxWarnKeys + 500 {
		tr.Ignored(fmt.Sprintf("course-v1:Org+C%d+1", i))
	}
	got := l.take(t)
	if len(got) != MaxWarnKeys+1 {
		t.Fatalf("%d warnings, want %d (one per key, one for the rest)", len(got), MaxWarnKeys+1)
	}
	if last := got[len(got)-1]["msg"].(string); !strings.Contains(last, "no rule maps further course keys") || !strings.Contains(last, "1 event ignored") {
		t.Fatalf("overflow line: %q", last)
	}
	if len(tr.warn) > MaxWarnKeys {
		t.Fatalf("%d keys remembered", len(tr.warn))
	}
	c.add(time.Hour)
	tr.Sweep()
	got = l.take(t)
	if len(got) != 1 || !strings.Contains(got[0]["msg"].(string), "499 events ignored") {
		t.Fatalf("after the hour: %v", msgs(got))
	}
	// The remembered keys had nothing more to report: forgotten, so new keys fit again.
	tr.Ignored("course-v1:New+C+1")
	if got := msgs(l.take(t)); len(got) != 1 || !strings.Contains(got[0], "course-v1:New+C+1") {
		t.Fatalf("new key after the sweep: %v", got)
	}
}

// Counts for the shared list are collected per process, bounded, and handed to the Store by
// Flush; without a Store nothing is collected.
func TestCollectBounded(t *testing.T) {
	tr, _, _ := newTracker()
	tr.Ignored("course-v1:A+B+C")
	if len(tr.pending) != 0 {
		t.Fatal("collected without a store")
	}
	tr.o.Store = &Store{}
	for i := range MaxPendingKeys + 10 {
		tr.Ignored(fmt.Sprintf("course-v1:Org+C%d+1", i))
	}
	if len(tr.pending) != MaxPendingKeys {
		t.Fatalf("%d pending keys, want %d", len(tr.pending), MaxPendingKeys)
	}
	select {
	case <-tr.flushNow:
	default:
		t.Fatal("a full collection does not ask for a write")
	}
}

func TestNilTracker(t *testing.T) {
	var tr *Tracker
	tr.Ignored("course-v1:A+B+C")
	tr.Sweep()
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Many goroutines at once (run with -race).
func TestConcurrentIgnored(t *testing.T) {
	tr, _, l := newTracker()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tr.Ignored(fmt.Sprintf("course-v1:Org+C%d+1", (g*200+i)%50))
				if i%50 == 0 {
					tr.Sweep()
				}
			}
		}()
	}
	wg.Wait()
	if got := l.take(t); len(got) != 50 {
		t.Fatalf("%d warnings for 50 keys within the hour", len(got))
	}
}
