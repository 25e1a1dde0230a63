package badgr

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A login block stored for a wrong password does not hold back the corrected password: a fixed
// configuration logs in at once instead of waiting out the old block.
func TestLoginBlockClearedByNewCredentials(t *testing.T) {
	e := newEnv(t)
	wrong := "wrong-" + testPassword
	bad := e.client(func(cfg *Config) { cfg.Password = wrong })
	if err := bad.Login(ctxT(t)); !errors.Is(err, ErrLoginBlocked) {
		t.Fatalf("login with a wrong password: %v", err)
	}
	// The host's own backoff after one failure (2 s) has run out; the stored block (60 s) has not.
	e.sb.SetClock(func() time.Time { return time.Now().Add(3 * time.Second) })

	good := e.client()
	if until, err := good.LoginBlockedUntil(ctxT(t)); err != nil || !until.IsZero() {
		t.Fatalf("the corrected credentials see a block until %v (%v)", until, err)
	}
	if err := good.Login(ctxT(t)); err != nil {
		t.Fatalf("login with the corrected password: %v", err)
	}
	if _, err := good.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Fatalf("list after the corrected login: %v", err)
	}
	if n := e.sb.Requests()["POST /o/token"]; n != 2 {
		t.Errorf("%d token requests, want 2 (the refused one and the corrected one)", n)
	}
	// Replicas still on the wrong password keep their block and do not call the host.
	if until, err := bad.LoginBlockedUntil(ctxT(t)); err != nil || until.IsZero() {
		t.Errorf("the wrong credentials' block is gone: %v, %v", until, err)
	}

	// The block names the credentials by a hash only.
	for _, k := range e.mr.Keys() {
		v, _ := e.mr.Get(k)
		for _, secret := range []string{wrong, testPassword, testUser} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Errorf("key %s holds a credential", k)
			}
		}
	}
}

func TestCredentialsFingerprint(t *testing.T) {
	base := Config{BaseURL: "https://badgr.example.org", ClientID: "public", ClientSecret: "s", Username: "u", Password: "p", Scope: "rw:issuer"}
	fp := credentialsFingerprint(base)
	changes := map[string]func(*Config){
		"url":      func(c *Config) { c.BaseURL += "x" },
		"client":   func(c *Config) { c.ClientID += "x" },
		"secret":   func(c *Config) { c.ClientSecret += "x" },
		"username": func(c *Config) { c.Username += "x" },
		"password": func(c *Config) { c.Password += "x" },
		"scope":    func(c *Config) { c.Scope += "x" },
		"boundary": func(c *Config) { c.Username, c.Password = "up", "" },
	}
	for name, change := range changes {
		c := base
		change(&c)
		if credentialsFingerprint(c) == fp {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	if credentialsFingerprint(base) != fp || len(fp) != 32 {
		t.Errorf("fingerprint %q not stable", fp)
	}
}
