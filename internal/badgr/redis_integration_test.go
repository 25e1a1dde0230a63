package badgr

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/testutil"
)

// Two replicas (two Clients, each with its own connection to a real redis-server) refresh the
// shared token exactly once per expiry, however many calls hit the 401 at the same time.
func TestIntegrationSharedTokenRefresh(t *testing.T) {
	rs := testutil.StartRedis(t)
	e := newEnv(t)
	replicas := []*Client{e.clientOn(rs.Client(t)), e.clientOn(rs.Client(t))}
	if err := replicas[0].Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.sb.SetLatency(10 * time.Millisecond)
	for round := 1; round <= 3; round++ {
		e.sb.ExpireTokens()
		var wg sync.WaitGroup
		var failed atomic.Int32
		for i := range 32 {
			c := replicas[i%2]
			wg.Go(func() {
				if _, err := c.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
					t.Errorf("round %d: %v", round, err)
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if g := e.sb.TokenGrants(); g["refresh_token"] != round || g["password"] != 1 {
			t.Fatalf("round %d: grants %v, want %d refreshes and one password grant", round, g, round)
		}
	}
}

// Two replicas at RateLimit=20 together stay at 20 requests/second.
func TestIntegrationSharedRateLimit(t *testing.T) {
	rs := testutil.StartRedis(t)
	e := newEnv(t)
	const rate = 20
	const window = 1500 * time.Millisecond
	replicas := []*Client{
		e.clientOn(rs.Client(t), func(c *Config) { c.RateLimit = rate }),
		e.clientOn(rs.Client(t), func(c *Config) { c.RateLimit = rate }),
	}
	for _, c := range replicas {
		if err := c.Login(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	const route = "GET /v2/badgeclasses/{id}"
	before := e.sb.Requests()[route]
	// The window bounds the calls through their context: a slot past it is not taken.
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 8 {
		c := replicas[i%2]
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := c.BadgeClassExists(ctx, testClass)
				var he *HostError
				if err != nil && !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &he) && he.Status == 429) {
					t.Errorf("call: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	n := e.sb.Requests()[route] - before
	// GCRA without burst: at most one request per 50 ms, plus the one at the window's start;
	// a little slack for clock granularity.
	upper := int(rate*window.Seconds()) + 1 + 2
	lower := int(rate * window.Seconds() * 0.6)
	t.Logf("%d requests in %v at %d/s shared by two replicas", n, window, rate)
	if n > upper || n < lower {
		t.Errorf("%d requests in %v, want between %d and %d", n, window, lower, upper)
	}
}
