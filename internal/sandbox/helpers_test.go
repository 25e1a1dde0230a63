package sandbox

import (
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/badgebridge/bridge/internal/testutil"
)

const (
	testUser     = "issuer.admin@example.org"
	testPassword = "correct-Horse-battery-9"
	testClass    = "K829IK8RS6ercwkpeFOn-Q"
	testEmail    = "learner@example.org"
)

// env is one test's sandbox host, served over HTTP.
type env struct {
	t   *testing.T
	sb  *Host
	srv *httptest.Server
}

func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	o := Options{Username: testUser, Password: testPassword, BadgeClasses: []string{testClass}}
	for _, f := range opts {
		f(&o)
	}
	e := &env{t: t, sb: New(o)}
	e.srv = httptest.NewServer(e.sb)
	t.Cleanup(e.srv.Close)
	e.sb.SetBaseURL(e.srv.URL)
	return e
}

// postToken sends a raw grant to the sandbox.
func (e *env) postToken(form url.Values) (int, map[string]any) {
	e.t.Helper()
	return testutil.PostForm(e.t, e.srv.URL+"/o/token", form)
}
