package badgr

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
)

func TestTooManyRequestsPausesAllReplicas(t *testing.T) {
	e := newEnv(t)
	a, b := e.client(), e.client()
	mustAward(t, a, "warmup@example.org")

	e.sb.FailNextWithRetryAfter(1, http.StatusTooManyRequests, time.Second)
	start := time.Now()
	_, err := a.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: testEmail})
	var he *HostError
	if !errors.As(err, &he) || he.Status != 429 || he.RetryAfter != time.Second || !he.Retryable() {
		t.Fatalf("award: %#v", err)
	}
	v, err := e.rdb.Get(ctxT(t), "bb:{badgr}:pause").Int64()
	if err != nil {
		t.Fatalf("no shared pause: %v", err)
	}
	if until := time.UnixMilli(v); until.Before(start.Add(900*time.Millisecond)) || until.After(start.Add(3*time.Second)) {
		t.Errorf("pause until %v, want about a second from %v", until, start)
	}

	// The other replica's call waits for the pause (no error), then goes through.
	if _, err := b.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatalf("list: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("list went after %v, inside the pause", d)
	}

	// A caller whose deadline ends inside the pause gets a 429 at once, and nothing is sent.
	e.sb.FailNextWithRetryAfter(1, http.StatusTooManyRequests, 10*time.Second)
	if _, err := a.Lookup(ctxT(t), testClass, []string{testEmail}); err == nil {
		t.Fatal("want 429")
	}
	before := e.sb.Requests()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = b.Lookup(ctx, testClass, []string{testEmail})
	if !errors.As(err, &he) || he.Status != 429 || he.RetryAfter < 9*time.Second {
		t.Fatalf("short deadline: %#v", err)
	}
	if after := e.sb.Requests(); after["GET /v2/badgeclasses/{id}/assertions"] != before["GET /v2/badgeclasses/{id}/assertions"] {
		t.Error("a request was sent during the pause")
	}
}

func TestTooManyRequestsDefaultPause(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	mustAward(t, c, "warmup@example.org")
	e.sb.FailNext(1, http.StatusTooManyRequests) // DRF throttling: no Retry-After
	_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	var he *HostError
	if !errors.As(err, &he) || he.RetryAfter != defaultPause {
		t.Fatalf("list: %#v", err)
	}
	if want := "badgr list: 429 miscellaneous error: Request was throttled. (retry after 5s)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if ttl := e.mr.TTL("bb:{badgr}:pause"); ttl <= 0 {
		t.Errorf("pause key without TTL: %v", ttl)
	}
}

func TestRateLimitSpacesRequests(t *testing.T) {
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.RateLimit = 50 })
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 10 {
		if _, err := c.BadgeClassExists(ctxT(t), testClass); err != nil {
			t.Fatal(err)
		}
	}
	// 50/s is one request per 20 ms; the login took the first slot of the burst-free schedule.
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("10 requests at 50/s took %v", d)
	}

	// A schedule that is full past the caller's deadline answers 429 without sending.
	e.rdb.Set(ctxT(t), "bb:{badgr}:ratelimit", strconv.FormatInt(time.Now().Add(5*time.Second).UnixMicro(), 10), time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.BadgeClassExists(ctx, testClass)
	var he *HostError
	if !errors.As(err, &he) || he.Status != 429 || he.RetryAfter < 4*time.Second {
		t.Fatalf("full schedule: %#v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"-3", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"99999999", maxPause, true},
		{"NaN", 0, false},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
