package badgr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/testutil"
)

// The badge-host client on a real Redis Cluster (three primaries, three replicas): its scripts
// touch several keys at once, which a cluster only accepts when they share a hash slot.
func TestIntegrationCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	cl := testutil.StartCluster(t)
	cc := cl.Client(t)

	// run runs one part on an empty cluster, with its own sandbox host, and fails it when a
	// Redis error the client only logs (a pause or login block not stored) shows up.
	run := func(name string, f func(t *testing.T, e *env)) {
		t.Run(name, func(t *testing.T) {
			if err := cc.ForEachMaster(ctxT(t), func(ctx context.Context, m *redis.Client) error {
				return m.FlushAll(ctx).Err()
			}); err != nil {
				t.Fatalf("flush: %v", err)
			}
			e := newEnv(t)
			t.Cleanup(func() {
				if out := e.logs.String(); strings.Contains(out, "CROSSSLOT") || strings.Contains(out, "could not store") {
					t.Errorf("Redis errors in the log:\n%s", out)
				}
			})
			f(t, e)
		})
	}

	run("keys share one slot", func(t *testing.T, e *env) {
		c := e.clientOn(cc)
		k := c.keys
		slots := map[int64][]string{}
		for _, key := range []string{k.token, k.tokenLock, k.pause, k.rate, k.blocked, k.blockedReason, k.blockedLogged + "1700000000000"} {
			slot, err := cc.ClusterKeySlot(ctxT(t), key).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots[slot] = append(slots[slot], key)
		}
		if len(slots) != 1 {
			t.Errorf("the client's keys spread over %d hash slots: %v", len(slots), slots)
		}
	})

	run("shared token", func(t *testing.T, e *env) {
		a, b := e.clientOn(cc), e.clientOn(cc)
		// Concurrent first logins from two replicas: one grant, under the shared lock.
		var wg sync.WaitGroup
		for i := range 8 {
			c := []*Client{a, b}[i%2]
			wg.Go(func() {
				if err := c.Login(ctxT(t)); err != nil {
					t.Errorf("login: %v", err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		mustAward(t, a, testEmail)
		got, err := b.Lookup(ctxT(t), testClass, []string{testEmail})
		if err != nil || len(got) != 1 {
			t.Fatalf("lookup through the other replica: %v, %v", got, err)
		}
		// An expired token is refreshed once for both replicas.
		e.sb.ExpireTokens()
		for i := range 8 {
			c := []*Client{a, b}[i%2]
			wg.Go(func() {
				if _, err := c.BadgeClassExists(ctxT(t), testClass); err != nil {
					t.Errorf("call after expiry: %v", err)
				}
			})
		}
		wg.Wait()
		if g := e.sb.TokenGrants(); g["password"] != 1 || g["refresh_token"] != 1 {
			t.Errorf("grants %v, want one password grant and one refresh", g)
		}
	})

	run("rate limit", func(t *testing.T, e *env) {
		const rate, n = 20, 20
		var mu sync.Mutex
		var sent []time.Time
		stamp := func(cfg *Config) {
			cfg.RateLimit = rate
			next := cfg.Transport
			cfg.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/assertions") {
					mu.Lock()
					sent = append(sent, time.Now())
					mu.Unlock()
				}
				return next.RoundTrip(r)
			})
		}
		a, b := e.clientOn(cc, stamp), e.clientOn(cc, stamp)
		if err := a.Login(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			c := []*Client{a, b}[i%2]
			wg.Go(func() { mustAward(t, c, fmt.Sprintf("learner%d@example.org", i)) })
		}
		wg.Wait()
		d := time.Since(start)
		t.Logf("%d concurrent awards at %d/s by two replicas took %v", n, rate, d.Round(time.Millisecond))
		if got := e.sb.Requests()["POST /v2/badgeclasses/{id}/assertions"]; got != n {
			t.Errorf("%d awards reached the host, want %d", got, n)
		}
		// No burst: one request per 50 ms, the first at once.
		if d < 900*time.Millisecond || d > 5*time.Second {
			t.Errorf("%d awards at %d/s took %v, want about 950 ms", n, rate, d)
		}
		slices.SortFunc(sent, time.Time.Compare)
		for i := 0; i+4 < len(sent); i++ {
			if gap := sent[i+4].Sub(sent[i]); gap < 150*time.Millisecond {
				t.Errorf("awards %d to %d sent within %v, want ≥ 200 ms", i, i+4, gap)
			}
		}
	})

	run("429 pauses every replica", func(t *testing.T, e *env) {
		a, b := e.clientOn(cc), e.clientOn(cc)
		mustAward(t, a, "warmup@example.org")
		e.sb.FailNextWithRetryAfter(1, http.StatusTooManyRequests, time.Second)
		start := time.Now()
		_, err := a.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: testEmail})
		var he *HostError
		if !errors.As(err, &he) || he.Status != 429 || he.RetryAfter != time.Second {
			t.Fatalf("award: %#v", err)
		}
		if _, err := cc.Get(ctxT(t), a.keys.pause).Int64(); err != nil {
			t.Fatalf("no shared pause: %v", err)
		}
		if _, err := b.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
			t.Fatalf("lookup: %v", err)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("the other replica's call went after %v, inside the pause", d)
		}
	})

	run("login block", func(t *testing.T, e *env) {
		wrong := func(cfg *Config) { cfg.Password = "wrong-" + testPassword }
		bad1, bad2 := e.clientOn(cc, wrong), e.clientOn(cc, wrong)
		if err := bad1.Login(ctxT(t)); !errors.Is(err, ErrLoginBlocked) {
			t.Fatalf("login with a wrong password: %v", err)
		}
		// The other replica with the same credentials sees the block and its reason, and does
		// not call the host.
		if until, err := bad2.LoginBlockedUntil(ctxT(t)); err != nil || time.Until(until) < 30*time.Second {
			t.Fatalf("the other replica sees a block until %v (%v)", until, err)
		}
		var lb *LoginBlockedError
		if err := bad2.Login(ctxT(t)); !errors.As(err, &lb) || lb.Reason == "" {
			t.Fatalf("the other replica's login: %v (want a block with the stored reason)", err)
		}
		if n := e.sb.Requests()["POST /o/token"]; n != 1 {
			t.Errorf("%d token requests, want 1", n)
		}
		// The corrected password is not held back (past the host's own 2 s backoff).
		e.sb.SetClock(func() time.Time { return time.Now().Add(3 * time.Second) })
		good := e.clientOn(cc)
		if err := good.Login(ctxT(t)); err != nil {
			t.Fatalf("login with the right password: %v", err)
		}
	})

	run("failover", func(t *testing.T, e *env) {
		a, b := e.clientOn(cc), e.clientOn(cc)
		mustAward(t, a, testEmail)
		cl.Failover(t, cl.PrimaryOf(t, a.keys.token))
		// The shared token, stored before the failover, serves the other replica.
		got, err := b.Lookup(ctxT(t), testClass, []string{testEmail})
		if err != nil || len(got) != 1 {
			t.Fatalf("lookup after failover: %v, %v", got, err)
		}
		mustAward(t, b, "second@example.org")
		if g := e.sb.TokenGrants(); g["password"] != 1 || len(g) != 1 {
			t.Errorf("grants %v, want the one password grant from before the failover", g)
		}
	})
}
