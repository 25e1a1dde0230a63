package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

const gaugeClass = "ClassGauges-000000001"

var stateGaugeNames = []string{"bridge_owed_rows", "bridge_owed_due_rows", "bridge_parked_rows", "bridge_badgehost_login_blocked_seconds"}

// owe records a certificate of learner uid, as the intake does: the row is owed a reconcile,
// due once the intake grace (30 s) has passed.
func owe(t *testing.T, l *ledger.Ledger, uid int64) ledger.RowKey {
	t.Helper()
	at := time.Now().UnixMicro()
	who := ledger.Learner{UserID: uid, Email: fmt.Sprintf("learner%d@example.com", uid), EmailAt: at}
	c := rules.Change{Course: "course-v1:OpenedX+DemoX+Demo_Course", Kind: edx.KindCertificate, Signal: edx.SignalSupports, At: at,
		Updates: []rules.Update{{BadgeClass: gaugeClass, Course: "course-v1:OpenedX+DemoX+Demo_Course", Rule: "cert",
			Signal: edx.SignalSupports, At: at, Event: edx.KindCertificate}}}
	a, err := l.Apply(context.Background(), who, c)
	if err != nil || len(a.Rows) != 1 {
		t.Fatalf("apply: rows %v, %v", a.Rows, err)
	}
	return a.Rows[0]
}

// settle ends a reconcile of k as a job does: fields written, next check at next (zero: none).
func settle(t *testing.T, l *ledger.Ledger, k ledger.RowKey, next time.Time, f ledger.Fields) {
	t.Helper()
	ctx := context.Background()
	r, err := l.Read(ctx, k)
	if err != nil || r == nil {
		t.Fatalf("read %s: %v", k, err)
	}
	tok, ok, err := l.Lock(ctx, k, time.Minute)
	if err != nil || !ok {
		t.Fatalf("lock %s: %v %v", k, ok, err)
	}
	if _, err := l.Finish(ctx, k, tok, r.Version, next, f); err != nil {
		t.Fatalf("finish %s: %v", k, err)
	}
	if err := l.Unlock(ctx, k, tok); err != nil {
		t.Fatal(err)
	}
}

func park(t *testing.T, l *ledger.Ledger, uid int64) {
	t.Helper()
	settle(t, l, owe(t, l, uid), time.Time{}, ledger.Fields{"state": ledger.StateFailed, "reason": "award: badge class not found"})
}

// gather collects g alone and returns the values of its gauges by name.
func gather(t *testing.T, g prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(g)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) != 1 || mf.GetType().String() != "GAUGE" {
			t.Fatalf("%s: %d %s samples, want one gauge", mf.GetName(), len(mf.GetMetric()), mf.GetType())
		}
		out[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	return out
}

// scrapedValues reads the samples of names (without labels) from a /metrics answer.
func scrapedValues(t *testing.T, url string, names ...string) map[string]float64 {
	t.Helper()
	raw := fetchMetrics(t, url)
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		for _, n := range names {
			if f[0] == n {
				v, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				out[n] = v
			}
		}
	}
	return out
}

// A bridge serve on a real Redis exposes owed, due and parked rows on its admin /metrics; without
// BRIDGE_BADGR_URL it has no badge-host client, and so no login-block gauge.
func TestStateGaugesOnMetrics(t *testing.T) {
	srv := testutil.StartRedis(t)
	l := ledger.New(srv.Client(t), ledger.Options{Prefix: keyPrefix})
	owe(t, l, 1)                                                                                // owed, due after the intake grace
	settle(t, l, owe(t, l, 2), time.Now().Add(-time.Second), ledger.Fields{"state": "pending"}) // owed and due
	park(t, l, 3)                                                                               // parked, not owed
	settle(t, l, owe(t, l, 4), time.Time{}, ledger.Fields{"state": ledger.StateIssued})         // settled: neither

	mapping := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mapping, []byte(demoMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	a := start(t, loadConfig(t, map[string]string{
		"BRIDGE_REDIS_URL": srv.URL, "BRIDGE_MAPPING_FILE": mapping,
		"BRIDGE_WEBHOOK_TOKENS": "webhook-token-0123456789abcdef0123456789",
	}), CmdServe, io.Discard)
	got := scrapedValues(t, "http://"+a.AdminAddr+"/metrics", stateGaugeNames...)
	want := map[string]float64{"bridge_owed_rows": 2, "bridge_owed_due_rows": 1, "bridge_parked_rows": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scraped %v, want %v", got, want)
	}
}

// The collector on a real Redis: the values, a login block the badge host imposed, the cache
// (one read serves scrapes for gaugeMaxAge), and no samples once Redis is gone.
func TestStateGaugesOnRedis(t *testing.T) {
	srv := testutil.StartRedis(t)
	rdb := srv.Client(t)
	l := ledger.New(rdb, ledger.Options{Prefix: keyPrefix})
	const user, pass = "svc", "pw-0123456789abcdef"
	sb := sandbox.New(sandbox.Options{Username: user, Password: pass, BadgeClasses: []string{gaugeClass}})
	host := badgr.New(badgr.Config{BaseURL: testutil.ServeHost(t, sb), Username: user, Password: pass, Timeout: 5 * time.Second}, rdb, nil)

	var offset atomic.Int64 // the collector's clock runs ahead of the wall clock by this
	g := newStateGauges(l, host)
	g.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	later := func() { offset.Add(int64(gaugeMaxAge + time.Second)) }

	owe(t, l, 1)
	settle(t, l, owe(t, l, 2), time.Now().Add(-time.Second), ledger.Fields{"state": "pending"})
	park(t, l, 3)
	got := gather(t, g)
	want := map[string]float64{"bridge_owed_rows": 2, "bridge_owed_due_rows": 1, "bridge_parked_rows": 1, "bridge_badgehost_login_blocked_seconds": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("gathered %v, want %v", got, want)
	}

	// The host refuses logins for a minute; another row parks.
	sb.ThrottleLogins(time.Minute)
	var lb *badgr.LoginBlockedError
	if err := host.Login(context.Background()); !errors.As(err, &lb) {
		t.Fatalf("login while the host throttles: %v", err)
	}
	park(t, l, 4)
	// Within gaugeMaxAge the last read answers: nothing new is read.
	if got := gather(t, g); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("from the cache: %v, want %v", got, want)
	}
	later()
	got = gather(t, g)
	left := got["bridge_badgehost_login_blocked_seconds"]
	delete(got, "bridge_badgehost_login_blocked_seconds")
	want = map[string]float64{"bridge_owed_rows": 2, "bridge_owed_due_rows": 1, "bridge_parked_rows": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after %v: %v, want %v", gaugeMaxAge, got, want)
	}
	// The block ends a minute after the login; the collector's clock is 6 s ahead.
	if ahead := time.Until(lb.Until).Seconds() - float64(offset.Load())/1e9; left <= 0 || left > ahead+0.5 || left < ahead-5 {
		t.Fatalf("login blocked for %.1f s more, want about %.1f", left, ahead)
	}

	// Without Redis: no samples (not the last values), and the scrape does not wait long.
	srv.Stop()
	later()
	begin := time.Now()
	if got := gather(t, g); len(got) != 0 {
		t.Fatalf("without Redis: %v, want no samples", got)
	}
	if d := time.Since(begin); d > gaugeReadTimeout+time.Second {
		t.Fatalf("a scrape without Redis took %v", d)
	}
}

// A Redis that accepts connections and never answers: the Redis client waits for its socket
// timeout (5 s), not for the context, but the scrape returns after the collector's timeout, and
// scrapes meanwhile do not start more reads.
func TestStateGaugesHungRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var accepted atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns.Go(func() {
				<-stop
				c.Close()
			})
		}
	}()
	t.Cleanup(func() { close(stop); ln.Close(); conns.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	g := newStateGauges(ledger.New(rdb, ledger.Options{Prefix: keyPrefix}), nil)
	g.timeout = 300 * time.Millisecond
	for range 3 {
		begin := time.Now()
		if got := gather(t, g); len(got) != 0 {
			t.Fatalf("hung Redis: %v, want no samples", got)
		}
		if d := time.Since(begin); d > g.timeout+500*time.Millisecond {
			t.Fatalf("a scrape against a hung Redis took %v", d)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections to the hung Redis, want the one read in flight", n)
	}
}

// With fakes: one read per gaugeMaxAge however many scrapes, concurrent ones included; a failed
// read leaves out only its gauges; a read that outlasts the timeout leaves out all of them, is not
// started again while it runs, and serves the scrapes after it once it ends (without the reads it
// skipped after its deadline).
func TestStateGaugesCache(t *testing.T) {
	var owedReads, parkedReads atomic.Int64
	var parkedErr atomic.Bool
	release := make(chan struct{})
	var hang atomic.Bool
	g := &stateGauges{
		src: stateSource{
			owed: func(ctx context.Context, now time.Time) (int64, int64, error) {
				owedReads.Add(1)
				if hang.Load() {
					<-release
				}
				if _, ok := ctx.Deadline(); !ok {
					return 0, 0, errors.New("read without a deadline")
				}
				return 7, 3, nil
			},
			parked: func(context.Context) (int64, error) {
				parkedReads.Add(1)
				if parkedErr.Load() {
					return 0, errors.New("redis: connection refused")
				}
				return 5, nil
			},
		},
		timeout: 200 * time.Millisecond, maxAge: 5 * time.Second,
	}
	var offset atomic.Int64
	g.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	later := func() { offset.Add(int64(6 * time.Second)) }

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			got := gather(t, g)
			if fmt.Sprint(got) != "map[bridge_owed_due_rows:3 bridge_owed_rows:7 bridge_parked_rows:5]" {
				t.Errorf("gathered %v", got)
			}
		})
	}
	wg.Wait()
	gather(t, g)
	if n := owedReads.Load(); n != 1 {
		t.Fatalf("%d reads for 21 scrapes within the cache period, want 1", n)
	}

	later()
	parkedErr.Store(true)
	if got := fmt.Sprint(gather(t, g)); got != "map[bridge_owed_due_rows:3 bridge_owed_rows:7]" {
		t.Fatalf("with the parked read failing: %s", got)
	}
	// A failed read is cached too: Redis is not asked again within the period.
	gather(t, g)
	if n := parkedReads.Load(); n != 2 {
		t.Fatalf("%d parked reads, want 2", n)
	}

	later()
	parkedErr.Store(false)
	hang.Store(true)
	for range 3 {
		begin := time.Now()
		if got := gather(t, g); len(got) != 0 {
			t.Fatalf("read in flight past the timeout: %v, want no samples", got)
		}
		if d := time.Since(begin); d > g.timeout+300*time.Millisecond {
			t.Fatalf("scrape took %v", d)
		}
	}
	if n := owedReads.Load(); n != 3 {
		t.Fatalf("%d reads, want 3: no new read while one is in flight", n)
	}
	hang.Store(false)
	close(release)
	// Its result serves the scrapes after it; the parked read, due after the deadline, was not sent.
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := gather(t, g)
		if len(got) > 0 {
			if fmt.Sprint(got) != "map[bridge_owed_due_rows:3 bridge_owed_rows:7]" {
				t.Fatalf("after the slow read ended: %v", got)
			}
			break
		} else if time.Now().After(deadline) {
			t.Fatal("no samples after the slow read ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if o, p := owedReads.Load(), parkedReads.Load(); o != 3 || p != 2 {
		t.Fatalf("%d owed and %d parked reads, want 3 and 2", o, p)
	}
}
