package badgr

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
)

// The client's errors tell the reconcile what to do through badgehost alone, and still unwrap
// to the badgr errors the check command and this package's tests look at.
func TestErrorsClassifyThroughBadgehost(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	mustAward(t, c, "warmup@example.org")

	// 429 without Retry-After: wait the default pause.
	e.sb.FailNext(1, http.StatusTooManyRequests)
	start := time.Now()
	_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	var wait *badgehost.WaitError
	var he *HostError
	if !errors.As(err, &wait) || wait.Reason != "badge host rate limit" || !errors.As(err, &he) || he.Status != 429 {
		t.Fatalf("429: %#v", err)
	}
	if d := wait.Until.Sub(start); d < defaultPause || d > defaultPause+2*time.Second {
		t.Errorf("429 waits %v, want %v", d, defaultPause)
	}
	e.mr.FastForward(time.Minute)
	_ = e.rdb.Del(ctxT(t), "bb:{badgr}:pause").Err()

	// A retryable answer says when to retry.
	e.sb.FailNextWithRetryAfter(1, http.StatusServiceUnavailable, 3*time.Second)
	_, err = c.Lookup(ctxT(t), testClass, []string{testEmail})
	if got := badgehost.RetryAfter(err); got != 3*time.Second || !errors.As(err, &he) || he.Status != 503 {
		t.Errorf("503: RetryAfter %v, %#v", got, err)
	}
	if errors.As(err, &wait) {
		t.Errorf("503 is a wait: %v", err)
	}

	// A permanent answer parks with the host's message.
	_, err = c.Award(ctxT(t), "unknownClass", badgehost.AwardRequest{Email: testEmail})
	var perm *badgehost.PermanentError
	if !errors.As(err, &perm) || perm.Reason != "award: entity not found or insufficient privileges" || !errors.As(err, &he) {
		t.Errorf("404: %#v", err)
	}
	if err.Error() != "badgr award: 404 entity not found or insufficient privileges" {
		t.Errorf("404 text %q", err)
	}

	// Already awarded is badgehost's sentinel.
	if _, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: "warmup@example.org"}); !errors.Is(err, badgehost.ErrAlreadyAwarded) {
		t.Errorf("duplicate: %v", err)
	}
}

func TestLoginBlockIsAWait(t *testing.T) {
	e := newEnv(t)
	bad := e.client(func(cfg *Config) { cfg.Password = "wrong-" + testPassword })
	_, err := bad.Lookup(ctxT(t), testClass, []string{testEmail})
	var wait *badgehost.WaitError
	var lb *LoginBlockedError
	if !errors.As(err, &wait) || !errors.As(err, &lb) || !wait.Until.Equal(lb.Until) ||
		wait.Reason != "badge host login blocked: "+lb.Reason {
		t.Fatalf("login blocked: %#v", err)
	}
	if err := bad.Login(ctxT(t)); !errors.As(err, &wait) || !errors.Is(err, ErrLoginBlocked) {
		t.Errorf("Login: %v", err)
	}
	assertNoSecrets(t, err, "wrong-")
}

func TestBadgeClass(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	bc, err := c.BadgeClass(ctxT(t), testClass)
	if err != nil {
		t.Fatal(err)
	}
	want := badgehost.BadgeClass{
		EntityID: testClass, OpenBadgeID: e.srv.URL + "/public/badges/" + testClass, Name: "Sandbox badge " + testClass,
		Description: "A badge class of the sandbox badge host", Image: e.srv.URL + "/public/badges/" + testClass + "/image",
	}
	if bc != want {
		t.Errorf("BadgeClass = %+v\nwant %+v", bc, want)
	}
	_, err = c.BadgeClass(ctxT(t), "unknownClass")
	var perm *badgehost.PermanentError
	if !errors.As(err, &perm) || perm.Reason != "badge class: entity not found or insufficient privileges" {
		t.Errorf("unknown class: %#v", err)
	}
}
