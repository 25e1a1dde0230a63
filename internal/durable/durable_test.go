package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func names(calls []call) []string {
	out := make([]string, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.String())
	}
	return out
}

// waitCalls returns what one Wait sent, and checks that all of it went on one connection.
func waitCalls(t *testing.T, f *fakeRedis, g *Gate) ([]string, error) {
	t.Helper()
	err := g.Wait(context.Background())
	calls := f.sent()
	first := -1
	for _, c := range calls {
		if c.args[0] == "info" { // a detection: any connection
			continue
		}
		if first < 0 {
			first = c.conn
		}
		if c.conn != first {
			t.Errorf("the wait used connections %d and %d: %v; WAIT covers only its own connection's writes", first, c.conn, names(calls))
		}
	}
	var out []string
	for _, c := range calls {
		if c.args[0] == "set" {
			// The value is a timestamp: keep the key and the expiry.
			out = append(out, strings.Join(append([]string{c.args[0], c.args[1]}, c.args[3:]...), " "))
			continue
		}
		out = append(out, c.String())
	}
	return out, err
}

func newGate(t *testing.T, f *fakeRedis, o Options) *Gate {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = "bb:"
	}
	g := New(f.client(t, 0), o)
	if err := g.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(f.sent()); strings.Join(got, ",") != "info server,info persistence,info replication" {
		t.Fatalf("Detect sent %v", got)
	}
	return g
}

// (a), (b), (c): what one wait sends, for each version, AOF setting and BRIDGE_REDIS_MIN_REPLICAS.
// Nothing at all when nothing applies; otherwise the marker, then the waits, on one connection.
func TestWaitSendsWhatApplies(t *testing.T) {
	const marker = "set bb:durable ex 60"
	for _, tc := range []struct {
		version string
		aof     bool
		min     int
		want    []string
	}{
		{"7.0.15", false, 0, nil},
		{"7.0.15", true, 0, nil}, // AOF, but no WAITAOF before 7.2
		{"7.2.0", false, 0, nil}, // 7.2, but AOF off
		{"6.2.14", true, 0, nil},
		{"7.2.4", true, 0, []string{marker, "waitAOF 1 0 1000"}},
		{"8.0.2", true, 0, []string{marker, "waitAOF 1 0 1000"}},
		{"10.0.0", true, 0, []string{marker, "waitAOF 1 0 1000"}},
		{"7.0.15", true, 1, []string{marker, "wait 1 1000"}},
		{"6.2.14", false, 2, []string{marker, "wait 2 1000"}},
		{"7.2.4", false, 1, []string{marker, "wait 1 1000"}},
		{"7.2.4", true, 2, []string{marker, "waitAOF 1 0 1000", "wait 2 1000"}},
	} {
		t.Run(fmt.Sprintf("%s aof=%v min=%d", tc.version, tc.aof, tc.min), func(t *testing.T) {
			f := newFakeRedis(t, tc.version, tc.aof)
			f.set(func(f *fakeRedis) { f.replicas = max(tc.min, 0) })
			g := newGate(t, f, Options{MinReplicas: tc.min, Timeout: time.Second})
			for range 2 {
				got, err := waitCalls(t, f, g)
				if err != nil {
					t.Fatalf("wait: %v", err)
				}
				if strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("sent %q, want %q", got, tc.want)
				}
			}
		})
	}
}

// (e): the marker and the waits go on one dedicated connection, never on a pooled one that
// others write on meanwhile; concurrent waits share rounds instead of a connection each.
func TestMarkerAndWaitShareOneConnection(t *testing.T) {
	f := newFakeRedis(t, "7.2.4", true)
	f.set(func(f *fakeRedis) { f.replicas, f.waitFor = 1, 50*time.Millisecond })
	g := newGate(t, f, Options{MinReplicas: 1, Timeout: time.Second})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	calls := f.sent()
	byConn := map[int][]string{}
	for _, c := range calls {
		byConn[c.conn] = append(byConn[c.conn], strings.ToUpper(c.args[0]))
	}
	markers := 0
	for conn, cmds := range byConn {
		// Each connection carries whole waits: SET, WAITAOF, WAIT, SET, WAITAOF, WAIT, …
		if len(cmds)%3 != 0 {
			t.Fatalf("connection %d carried %v: a marker without its waits", conn, cmds)
		}
		for i := 0; i < len(cmds); i += 3 {
			if got := strings.Join(cmds[i:i+3], " "); got != "SET WAITAOF WAIT" {
				t.Fatalf("connection %d carried %v", conn, cmds)
			}
			markers++
		}
	}
	// Concurrent waits share rounds: the first goes alone, the others join the next round
	// while it is in flight (each round takes 50 ms here).
	if markers < 1 || markers >= 8 {
		t.Errorf("8 concurrent waits sent %d markers; want them grouped into fewer rounds", markers)
	}
}

// (d): too few replicas, no local fsync, an error reply or a marker that cannot be written is
// an error wrapping ErrNotConfirmed.
func TestFailedWaitIsNotConfirmed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(f *fakeRedis)
		want  string
	}{
		{"too few replicas", func(f *fakeRedis) { f.replicas = 1 }, "1 of 2 replicas acknowledged"},
		{"no local fsync", func(f *fakeRedis) { f.replicas, f.fsynced = 2, 0 }, "did not fsync its AOF"},
		{"error reply", func(f *fakeRedis) { f.waitErr = "ERR WAIT cannot be used with replica instances" }, "WAITAOF: ERR WAIT cannot"},
		{"marker refused", func(f *fakeRedis) { f.setErr = "READONLY You can't write against a read only replica." }, "marker write: READONLY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRedis(t, "7.2.4", true)
			f.set(func(f *fakeRedis) { f.replicas = 2 })
			g := newGate(t, f, Options{MinReplicas: 2, Timeout: time.Second})
			f.set(tc.setup)
			err := g.Wait(context.Background())
			if !errors.Is(err, ErrNotConfirmed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Wait: %v, want ErrNotConfirmed with %q", err, tc.want)
			}
		})
	}
	t.Run("redis gone", func(t *testing.T) {
		f := newFakeRedis(t, "7.0.15", false)
		f.set(func(f *fakeRedis) { f.replicas = 1 })
		g := newGate(t, f, Options{MinReplicas: 1, Timeout: time.Second})
		_ = f.ln.Close()
		g.client.Close()
		if err := g.Wait(context.Background()); !errors.Is(err, ErrNotConfirmed) {
			t.Fatalf("Wait with the Redis gone: %v, want ErrNotConfirmed", err)
		}
	})
}

// A client whose read deadline is shorter than the wait still waits the full timeout: the
// commands go one at a time, each wait with a deadline of its own. A failed marker stops it
// before any wait.
func TestShortReadTimeoutWaitsCommandByCommand(t *testing.T) {
	f := newFakeRedis(t, "7.2.4", true)
	f.set(func(f *fakeRedis) { f.replicas, f.waitFor = 1, 400*time.Millisecond })
	g := New(f.client(t, 200*time.Millisecond), Options{MinReplicas: 1, Timeout: time.Second, Prefix: "bb:"})
	if g.pipelined {
		t.Fatal("pipelined under a read deadline shorter than the wait")
	}
	if err := g.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.sent()
	got, err := waitCalls(t, f, g)
	if err != nil {
		t.Fatalf("a wait of 400ms under a 200ms read deadline: %v", err)
	}
	if strings.Join(got, ",") != "set bb:durable ex 60,waitAOF 1 0 1000,wait 1 1000" {
		t.Fatalf("sent %q", got)
	}
	f.set(func(f *fakeRedis) { f.setErr = "OOM command not allowed" })
	got, err = waitCalls(t, f, g)
	if !errors.Is(err, ErrNotConfirmed) || len(got) != 1 {
		t.Fatalf("failed marker: sent %q, err %v; want the marker only and ErrNotConfirmed", got, err)
	}
}

// A Sentinel failover can bring a primary of another version or AOF setting: the gate looks
// again once a minute, and soon after a failed wait.
func TestRedetects(t *testing.T) {
	f := newFakeRedis(t, "7.0.15", true)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	g := New(f.client(t, 0), Options{Timeout: time.Second, Prefix: "bb:"})
	g.now = now
	if err := g.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.sent()
	f.set(func(f *fakeRedis) { f.version = "7.2.4" }) // the failover
	if got, _ := waitCalls(t, f, g); len(got) != 0 {
		t.Fatalf("within the minute: sent %q, want nothing", got)
	}
	advance(redetectEvery)
	got, err := waitCalls(t, f, g)
	if err != nil || strings.Join(got, ",") != "info server,info persistence,info replication,set bb:durable ex 60,waitAOF 1 0 1000" {
		t.Fatalf("after a minute: sent %q (%v), want a detection, then WAITAOF", got, err)
	}
	if d := g.Describe(); !strings.HasPrefix(d, "fsync (WAITAOF") {
		t.Fatalf("Describe: %s", d)
	}

	// AOF turned off on the new primary: WAITAOF fails, and a detection soon after notices.
	f.set(func(f *fakeRedis) { f.aof = false })
	if err := g.Wait(context.Background()); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("WAITAOF with AOF off: %v", err)
	}
	f.sent()
	advance(redetectAfterFailure)
	got, err = waitCalls(t, f, g)
	if err != nil || strings.Join(got, ",") != "info server,info persistence,info replication" {
		t.Fatalf("after a failed wait: sent %q (%v), want a detection and no wait", got, err)
	}
}

// A detection that fails at start leaves WAIT in force and WAITAOF off, and is retried.
func TestDetectionFailureKeepsWaiting(t *testing.T) {
	f := newFakeRedis(t, "7.2.4", true)
	f.set(func(f *fakeRedis) { f.replicas = 1; f.version = "" })
	c := f.client(t, 0)
	g := New(c, Options{MinReplicas: 1, Timeout: time.Second, Prefix: "bb:"})
	_ = f.ln.Close() // nobody answers the detection
	c.Close()
	if err := g.Detect(context.Background()); err == nil {
		t.Fatal("Detect against a closed client succeeded")
	}
	if d := g.Describe(); !strings.HasPrefix(d, "unknown:") || !strings.Contains(d, "1 replica (WAIT)") {
		t.Fatalf("Describe after a failed detection: %s", d)
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		version string
		aof     bool
		min     int
		want    string
	}{
		{"7.2.4", true, 0, "fsync (WAITAOF, Redis ≥ 7.2 with AOF): an answered event survives a crash"},
		{"7.2.4", true, 1, "fsync (WAITAOF, Redis ≥ 7.2 with AOF) and replicas: waits for 1 replica (WAIT)"},
		{"7.0.15", true, 2, "replicas: waits for 2 replicas (WAIT) before answering or acknowledging, so a failover keeps answered events; no fsync wait (Redis 7.0.15 with AOF: WAITAOF needs 7.2)"},
		{"7.0.15", true, 0, "neither: an answer means the primary accepted the write (Redis 7.0.15 with AOF: WAITAOF needs 7.2); a Redis crash can lose the last second with AOF everysec"},
		{"7.2.4", false, 0, "neither: an answer means the primary accepted the write (Redis 7.2.4, AOF off)"},
	} {
		f := newFakeRedis(t, tc.version, tc.aof)
		f.set(func(f *fakeRedis) { f.replicas = tc.min })
		g := newGate(t, f, Options{MinReplicas: tc.min})
		if d := g.Describe(); !strings.HasPrefix(d, tc.want) {
			t.Errorf("%s aof=%v min=%d:\n got %s\nwant %s…", tc.version, tc.aof, tc.min, d, tc.want)
		}
		if p := g.Problems(); len(p) != 0 {
			t.Errorf("%s aof=%v min=%d: problems %v", tc.version, tc.aof, tc.min, p)
		}
	}
	// check --remote names a MIN_REPLICAS the primary cannot meet.
	f := newFakeRedis(t, "7.0.15", true)
	f.set(func(f *fakeRedis) { f.replicas = 1 })
	g := newGate(t, f, Options{MinReplicas: 2})
	if p := g.Problems(); len(p) != 1 || !strings.Contains(p[0], "has 1 replica connected") {
		t.Errorf("problems with 1 of 2 replicas: %v", p)
	}
	var nilGate *Gate
	if err := nilGate.Wait(context.Background()); err != nil || nilGate.Describe() == "" {
		t.Errorf("a nil gate: %v %q", err, nilGate.Describe())
	}
}

// A Gate on a client that is not one connection pool (a cluster client handed to New, not
// Open) cannot wait: nothing is sent, and check --remote says so.
func TestOtherClientsDoNotWait(t *testing.T) {
	f := newFakeRedis(t, "7.2.4", true)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{f.ln.Addr().String()}})
	t.Cleanup(func() { _ = cc.Close() })
	g := New(cc, Options{MinReplicas: 1})
	if err := g.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.sent(); len(got) != 0 {
		t.Fatalf("sent %v to a cluster", names(got))
	}
	if !strings.Contains(g.Describe(), "not supported") || len(g.Problems()) != 1 {
		t.Fatalf("Describe %q, Problems %v", g.Describe(), g.Problems())
	}
}

// WAIT 0 would block forever: a sub-millisecond timeout is sent as 1.
func TestTimeoutNeverZero(t *testing.T) {
	f := newFakeRedis(t, "7.0.15", false)
	f.set(func(f *fakeRedis) { f.replicas = 1 })
	g := newGate(t, f, Options{MinReplicas: 1, Timeout: time.Microsecond})
	got, err := waitCalls(t, f, g)
	if err != nil || got[len(got)-1] != "wait 1 1" {
		t.Fatalf("sent %q (%v)", got, err)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"7.2.0": true, "7.2.4": true, "7.10.1": true, "8.0.0": true, "7.1.9": false, "7.0.15": false, "6.2.14": false, "": false, "x.y": false} {
		if got := VersionAtLeast(v, 7, 2); got != want {
			t.Errorf("VersionAtLeast(%q, 7, 2) = %v", v, got)
		}
	}
}

// The start log says what applies, and warns once (not every minute) when fewer replicas are
// connected than required.
func TestDetectLogs(t *testing.T) {
	f := newFakeRedis(t, "7.2.4", true)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	g := New(f.client(t, 0), Options{MinReplicas: 1, Prefix: "bb:", Log: log})
	for range 3 {
		if err := g.Detect(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	if strings.Count(out, `"msg":"queue Redis durability detected"`) != 1 || !strings.Contains(out, `"applies":"fsync (WAITAOF, Redis ≥ 7.2 with AOF) and replicas`) {
		t.Errorf("detection log:\n%s", out)
	}
	if strings.Count(out, "fewer replicas connected than BRIDGE_REDIS_MIN_REPLICAS") != 1 {
		t.Errorf("want one warning about the missing replica:\n%s", out)
	}
	f.set(func(f *fakeRedis) { f.replicas = 1 })
	buf.Reset()
	_ = g.Detect(context.Background())
	if buf.Len() != 0 {
		t.Errorf("a replica came back: logged %s", buf.String())
	}
}
