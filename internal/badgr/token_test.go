package badgr

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

func (e *env) storedToken() storedToken {
	e.t.Helper()
	b, err := e.rdb.Get(ctxT(e.t), "bb:{badgr}:token").Bytes()
	if err != nil {
		e.t.Fatalf("stored token: %v", err)
	}
	var st storedToken
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// postToken sends a raw grant to the sandbox, bypassing the client.
func (e *env) postToken(form url.Values) (int, map[string]any) {
	e.t.Helper()
	return testutil.PostForm(e.t, e.srv.URL+"/o/token", form)
}

func TestTokenRequestIsFormOnly(t *testing.T) {
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.ClientSecret = testSecret })
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	reqs := e.rec.all()
	if len(reqs) != 1 || reqs[0].path != "/o/token" || reqs[0].rawQuery != "" {
		t.Fatalf("requests: %+v", reqs)
	}
	if ct := reqs[0].header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("content type %q", ct)
	}
	form, _ := url.ParseQuery(reqs[0].body)
	want := url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword},
		"client_id": {"public"}, "client_secret": {testSecret}, "scope": {"rw:issuer"}}
	if form.Encode() != want.Encode() {
		t.Errorf("form = %v", form)
	}
	st := e.storedToken()
	if st.Access == "" || st.Refresh == "" || time.Until(st.ExpiresAt) < 23*time.Hour {
		t.Errorf("stored token %+v", st)
	}
	// A fresh token: Login does not call the host again.
	if err := c.Login(ctxT(t)); err != nil || len(e.rec.all()) != 1 {
		t.Errorf("second login: %v, %d requests", err, len(e.rec.all()))
	}
}

func TestTokenExpiryMidRun(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	mustAward(t, c, testEmail)
	old := e.storedToken()

	e.sb.ExpireTokens()
	list, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	if err != nil || len(list) != 1 {
		t.Fatalf("list after expiry: %v, %v", list, err)
	}
	if g := e.sb.TokenGrants(); g["password"] != 1 || g["refresh_token"] != 1 {
		t.Errorf("grants = %v, want one password and one refresh", g)
	}
	cur := e.storedToken()
	if cur.Refresh == "" || cur.Refresh == old.Refresh || cur.Access == old.Access {
		t.Fatal("refresh token not rotated in the store")
	}
	// Rotation: the old refresh token is dead.
	status, body := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old.Refresh}, "client_id": {"public"}})
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("old refresh token: %d %v", status, body)
	}
	if n := e.sb.Requests()["GET /v2/badgeclasses/{id}/assertions"]; n != 2 {
		t.Errorf("%d list calls, want 2 (401, then the retry)", n)
	}
}

func TestProactiveRefresh(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	st := e.storedToken()
	st.ExpiresAt = time.Now().Add(30 * time.Second) // inside the 60 s margin
	b, _ := json.Marshal(st)
	e.rdb.Set(ctxT(t), "bb:{badgr}:token", b, 0)
	if _, err := c.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatal(err)
	}
	if g := e.sb.TokenGrants(); g["refresh_token"] != 1 {
		t.Errorf("grants = %v", g)
	}
	if n := e.sb.Requests()["GET /v2/badgeclasses/{id}/assertions"]; n != 1 {
		t.Errorf("%d list calls, want 1 (no 401)", n)
	}
}

func TestTwoReplicasRefreshOnce(t *testing.T) {
	e := newEnv(t)
	a, b := e.client(), e.client()
	if err := a.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.sb.ExpireTokens()
	e.sb.SetLatency(20 * time.Millisecond) // let the goroutines overlap
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Go(func() {
			_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if g := e.sb.TokenGrants(); g["refresh_token"] != 1 || g["password"] != 1 {
		t.Errorf("grants = %v, want exactly one refresh", g)
	}
	if n := e.sb.Requests()["POST /o/token"]; n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

func TestRefreshRejectedFallsBackToPassword(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	st := e.storedToken()
	st.Refresh = "stolen-and-used-elsewhere"
	b, _ := json.Marshal(st)
	e.rdb.Set(ctxT(t), "bb:{badgr}:token", b, 0)
	e.sb.ExpireTokens()
	if _, err := c.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatalf("list: %v", err)
	}
	if g := e.sb.TokenGrants(); g["password"] != 2 {
		t.Errorf("grants = %v, want a second password grant", g)
	}
	if until, _ := c.LoginBlockedUntil(ctxT(t)); !until.IsZero() {
		t.Errorf("blocked until %v after a successful fallback", until)
	}
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, func(o *sandbox.Options) { o.ClientID = "bridge-app"; o.ClientSecret = testSecret })
	c := e.client(func(cfg *Config) {
		cfg.Username, cfg.Password = "", ""
		cfg.ClientID, cfg.ClientSecret = "bridge-app", testSecret
	})
	mustAward(t, c, testEmail)
	if st := e.storedToken(); st.Refresh != "" {
		t.Errorf("client_credentials stored a refresh token")
	}
	e.sb.ExpireTokens()
	if _, err := c.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatal(err)
	}
	if g := e.sb.TokenGrants(); g["client_credentials"] != 2 || len(g) != 1 {
		t.Errorf("grants = %v", g)
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t)
	a, b := e.client(), e.client()
	e.sb.ThrottleLogins(3 * time.Second)
	start := time.Now()
	err := a.Login(ctxT(t))
	var lb *LoginBlockedError
	if !errors.As(err, &lb) || !errors.Is(err, ErrLoginBlocked) {
		t.Fatalf("login: %v", err)
	}
	if d := lb.Until.Sub(start); d < 2*time.Second || d > 5*time.Second {
		t.Errorf("blocked for %v, want the sandbox's 3 s", d)
	}
	if !strings.Contains(lb.Reason, "login attempts throttled") {
		t.Errorf("reason %q", lb.Reason)
	}
	assertNoSecrets(t, err)

	// Every call, on every replica, fails fast without touching the host.
	before := e.sb.Requests()
	for _, c := range []*Client{a, b} {
		if _, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: testEmail}); !errors.Is(err, ErrLoginBlocked) {
			t.Errorf("award while blocked: %v", err)
		}
		if err := c.Login(ctxT(t)); !errors.Is(err, ErrLoginBlocked) {
			t.Errorf("login while blocked: %v", err)
		}
		until, err := c.LoginBlockedUntil(ctxT(t))
		if err != nil || !until.Equal(lb.Until) {
			t.Errorf("LoginBlockedUntil = %v, %v; want %v", until, err, lb.Until)
		}
	}
	if after := e.sb.Requests(); len(after) != len(before) || after["POST /o/token"] != 1 {
		t.Errorf("requests while blocked: %v → %v", before, after)
	}
	if n := strings.Count(e.logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want one per block period:\n%s", n, e.logs.String())
	}

	// After the block (moved forward on the Redis clock; the sandbox's throttle ran out in
	// real time), logins work again.
	e.mr.SetTime(time.Now().Add(4 * time.Second))
	e.sb.SetClock(func() time.Time { return time.Now().Add(4 * time.Second) })
	if until, _ := a.LoginBlockedUntil(ctxT(t)); !until.IsZero() {
		t.Fatalf("still blocked until %v", until)
	}
	if err := b.Login(ctxT(t)); err != nil {
		t.Fatalf("login after the block: %v", err)
	}
}

func TestWrongPassword(t *testing.T) {
	e := newEnv(t)
	bad := e.client(func(cfg *Config) { cfg.Password = "wrong-" + testPassword })
	start := time.Now()
	err := bad.Login(ctxT(t))
	var lb *LoginBlockedError
	if !errors.As(err, &lb) {
		t.Fatalf("login: %v", err)
	}
	if d := lb.Until.Sub(start); d < 59*time.Second || d > 63*time.Second {
		t.Errorf("blocked for %v, want 60 s", d)
	}
	if !strings.Contains(lb.Reason, "invalid_grant") {
		t.Errorf("reason %q", lb.Reason)
	}
	assertNoSecrets(t, err, "wrong-")
	if _, err := bad.Lookup(ctxT(t), testClass, []string{testEmail}); !errors.Is(err, ErrLoginBlocked) {
		t.Errorf("list while blocked: %v", err)
	}
	if n := e.sb.Requests()["POST /o/token"]; n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}

	// A minute later (Redis clock), the host's own backoff still refuses even the right
	// password, as Badgr does; the client takes the announced period.
	e.mr.SetTime(time.Now().Add(61 * time.Second))
	good := e.client()
	err = good.Login(ctxT(t))
	if !errors.As(err, &lb) || !strings.Contains(lb.Reason, "throttled") {
		t.Fatalf("login during the host's backoff: %v", err)
	}
	if d := lb.Until.Sub(time.Now().Add(61 * time.Second)); d < time.Second || d > 3*time.Second {
		t.Errorf("blocked for %v, want the host's 2 s", d)
	}
	if n := strings.Count(e.logs.String(), "level=ERROR"); n != 2 {
		t.Errorf("%d error lines, want 2 (two periods)", n)
	}
}

func TestLoginOutageBlocks(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.sb.SetOutage(true)
	err := c.Login(ctxT(t))
	var lb *LoginBlockedError
	if !errors.As(err, &lb) || !strings.Contains(lb.Reason, "503") {
		t.Fatalf("login during outage: %v", err)
	}
}

// A token stored by a version before the {badgr} hash tag is used after the upgrade, without a
// new login, and the next store puts it under the new key.
func TestTokenUnderTheOldKeyIsKept(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b, err := e.rdb.Get(ctxT(t), "bb:{badgr}:token").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	e.rdb.Del(ctxT(t), "bb:{badgr}:token")
	e.rdb.Set(ctxT(t), "bb:badgr:token", b, 0)
	before := e.sb.TokenGrants()
	if _, err := e.client().Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatal(err)
	}
	if after := e.sb.TokenGrants(); after["password"] != before["password"] || after["refresh_token"] != before["refresh_token"] {
		t.Errorf("grants %v after the upgrade, %v before: the old token was not used", after, before)
	}
	e.sb.ExpireTokens()
	if _, err := e.client().Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rdb.Get(ctxT(t), "bb:{badgr}:token").Bytes(); err != nil {
		t.Errorf("the renewed token is not under the new key: %v", err)
	}
}

// Durations in the client's log lines read as durations even with a plain JSON handler (issue
// 12: the token lifetime showed as 86400000000000 nanoseconds).
func TestTokenLifetimeLoggedAsDuration(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := New(Config{BaseURL: e.srv.URL + "/", Username: testUser, Password: testPassword, Timeout: 5 * time.Second}, e.rdb, log)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var got, req map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch m["msg"] {
		case "badgr: obtained an access token":
			got = m
		case "badgr: token request":
			req = m
		}
	}
	if got == nil || got["expires_in"] != "24h0m0s" {
		t.Fatalf("token line: %v\n%s", got, buf.String())
	}
	if _, ok := req["duration_ms"].(float64); req == nil || !ok || req["duration"] != nil {
		t.Fatalf("token request line: %v", req)
	}
}
