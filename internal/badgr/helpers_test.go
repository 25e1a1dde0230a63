package badgr

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

const (
	testUser     = "issuer.admin@example.org"
	testPassword = "correct-Horse-battery-9"
	testSecret   = "client-secret-value-1234"
	testClass    = "K829IK8RS6ercwkpeFOn-Q"
	testEmail    = "learner@example.org"
)

// recorder is an http.RoundTripper that keeps a copy of every request.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
	next http.RoundTripper
}

type recorded struct {
	method, path, rawQuery string
	header                 http.Header
	body                   string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{req.Method, req.URL.Path, req.URL.RawQuery, req.Header.Clone(), string(body)})
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// env is one test's badge host, Redis and log capture. When the test ends it checks that no
// secret, token or e-mail address reached the log.
type env struct {
	t    *testing.T
	mr   *miniredis.Miniredis
	rdb  *redis.Client
	sb   *sandbox.Host
	srv  *httptest.Server
	logs *testutil.Output
	log  *slog.Logger
	rec  *recorder
}

func newEnv(t *testing.T, opts ...func(*sandbox.Options)) *env {
	t.Helper()
	o := sandbox.Options{Username: testUser, Password: testPassword, BadgeClasses: []string{testClass}}
	for _, f := range opts {
		f(&o)
	}
	e := &env{t: t, mr: miniredis.RunT(t), logs: &testutil.Output{}}
	e.rdb = redis.NewClient(&redis.Options{Addr: e.mr.Addr()})
	t.Cleanup(func() { _ = e.rdb.Close() })
	e.sb = sandbox.New(o)
	e.srv = httptest.NewServer(e.sb)
	t.Cleanup(e.srv.Close)
	e.sb.SetBaseURL(e.srv.URL)
	e.log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.rec = &recorder{next: http.DefaultTransport}
	t.Cleanup(func() { e.checkLogs(o) })
	return e
}

// client returns a Client of this env; mods adjust the configuration.
func (e *env) client(mods ...func(*Config)) *Client { return e.clientOn(e.rdb, mods...) }

// clientOn returns a Client of this env using another Redis.
func (e *env) clientOn(rdb redis.UniversalClient, mods ...func(*Config)) *Client {
	cfg := Config{BaseURL: e.srv.URL + "/", Username: testUser, Password: testPassword, Timeout: 5 * time.Second, Transport: e.rec}
	for _, f := range mods {
		f(&cfg)
	}
	return New(cfg, rdb, e.log)
}

func (e *env) checkLogs(o sandbox.Options) {
	out := e.logs.String()
	forbidden := []string{testPassword, testSecret, "@"}
	if o.Password != "" {
		forbidden = append(forbidden, o.Password)
	}
	forbidden = append(forbidden, e.sb.IssuedTokens()...)
	for _, f := range forbidden {
		if strings.Contains(out, f) {
			e.t.Errorf("log output contains a secret, token or e-mail (%.6s…):\n%s", f, out)
		}
	}
}

// assertNoSecrets fails when an error text carries something it must not.
func assertNoSecrets(t *testing.T, err error, extra ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, f := range append([]string{testPassword, testSecret, "@"}, extra...) {
		if f != "" && strings.Contains(msg, f) {
			t.Errorf("error %q contains %q", msg, f)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAward(t *testing.T, c *Client, email string) badgehost.Assertion {
	t.Helper()
	a, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: email, IssuedOn: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatalf("award: %v", err)
	}
	return a
}
