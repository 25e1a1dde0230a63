package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(context.Background(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.AdminAddr != "127.0.0.1:8081" || c.BadgrRateLimit != 10 ||
		c.BadgrTimeout != 15*time.Second || c.MaxRetry != 12 || c.Settle != 5*time.Minute ||
		c.EventBusGroup != "badge-bridge" || len(c.EventBusStreams) != 2 || c.BadgrClientID != "public" ||
		c.WebhookMaxInflight != 256 || c.RedisMinReplicas != 0 || c.RedisWaitTimeout != time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if !c.DevMode("run") || c.DevMode("serve") {
		t.Fatal("development mode: run with nothing configured only")
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := map[string]map[string]string{
		"BRIDGE_BADGR_TIMEOUT":        {"BRIDGE_BADGR_TIMEOUT": "soon"},
		"BRIDGE_MAX_RETRY":            {"BRIDGE_MAX_RETRY": "-1"},
		"BRIDGE_SHUTDOWN_GRACE":       {"BRIDGE_SHUTDOWN_GRACE": "10s"},
		"BRIDGE_SETTLE":               {"BRIDGE_SETTLE": "1s"},
		"BRIDGE_WEBHOOK_TOKENS":       {"BRIDGE_WEBHOOK_TOKENS": "short"},
		"BRIDGE_WEBHOOK_SECRETS":      {"BRIDGE_WEBHOOK_SECRETS": "whsec_notbase64!"},
		"BRIDGE_REDIS_URL":            {"BRIDGE_REDIS_URL": "http://user:hunter2@x"},
		"BRIDGE_EVENTBUS_START":       {"BRIDGE_EVENTBUS_START": "middle"},
		"BRIDGE_LEARNER_RECORD":       {"BRIDGE_LEARNER_RECORD": "some"},
		"BRIDGE_LOG_FORMAT":           {"BRIDGE_LOG_FORMAT": "xml"},
		"BRIDGE_BADGR_URL":            {"BRIDGE_BADGR_URL": "api.badgr.io"},
		"BRIDGE_WEBHOOK_QUERY_TOKENS": {"BRIDGE_WEBHOOK_TOKENS": strings.Repeat("a", 32), "BRIDGE_WEBHOOK_QUERY_TOKENS": strings.Repeat("a", 32)},
		"BRIDGE_ADMIN_TOKEN":          {"BRIDGE_ADMIN_TOKEN": "tiny"},
		"BRIDGE_WEBHOOK_MAX_INFLIGHT": {"BRIDGE_WEBHOOK_MAX_INFLIGHT": "0"},
		"BRIDGE_REDIS_MIN_REPLICAS":   {"BRIDGE_REDIS_MIN_REPLICAS": "-1"},
		"BRIDGE_REDIS_WAIT_TIMEOUT":   {"BRIDGE_REDIS_WAIT_TIMEOUT": "0s"},
	}
	for name, vars := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFrom(context.Background(), env(vars))
			if err == nil || !strings.HasPrefix(err.Error(), name) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line starting with %s", err, name)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	tok := strings.Repeat("x", 40)
	path := filepath.Join(dir, "admin")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFrom(context.Background(), env(map[string]string{"BRIDGE_ADMIN_TOKEN_FILE": path}))
	if err != nil || c.AdminToken != tok {
		t.Fatalf("admin token from file: %q %v", c.AdminToken, err)
	}
	_, err = LoadFrom(context.Background(), env(map[string]string{"BRIDGE_ADMIN_TOKEN_FILE": path, "BRIDGE_ADMIN_TOKEN": tok}))
	if err == nil || !strings.Contains(err.Error(), "BRIDGE_ADMIN_TOKEN_FILE") {
		t.Fatalf("both set: %v", err)
	}
	_, err = LoadFrom(context.Background(), env(map[string]string{"BRIDGE_BADGR_PASSWORD_FILE": filepath.Join(dir, "missing")}))
	if err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_BADGR_PASSWORD_FILE") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestDurabilitySettings(t *testing.T) {
	const url = "redis://127.0.0.1:6379/0"
	c, err := LoadFrom(context.Background(), env(map[string]string{
		"BRIDGE_REDIS_URL": url, "BRIDGE_REDIS_MIN_REPLICAS": "2", "BRIDGE_REDIS_WAIT_TIMEOUT": "250ms",
	}))
	if err != nil || c.RedisMinReplicas != 2 || c.RedisWaitTimeout != 250*time.Millisecond {
		t.Fatalf("%d %s %v", c.RedisMinReplicas, c.RedisWaitTimeout, err)
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"BRIDGE_REDIS_MIN_REPLICAS": "two"}, "BRIDGE_REDIS_MIN_REPLICAS: invalid value (want a whole number)"},
		{map[string]string{"BRIDGE_REDIS_MIN_REPLICAS": "101"}, "BRIDGE_REDIS_MIN_REPLICAS: must be between 0 and 100"},
		{map[string]string{"BRIDGE_REDIS_WAIT_TIMEOUT": "soon"}, "BRIDGE_REDIS_WAIT_TIMEOUT: invalid value (want a duration"},
		{map[string]string{"BRIDGE_REDIS_WAIT_TIMEOUT": "500us"}, "BRIDGE_REDIS_WAIT_TIMEOUT: must be between 1ms and 4s"},
		{map[string]string{"BRIDGE_REDIS_WAIT_TIMEOUT": "5s"}, "BRIDGE_REDIS_WAIT_TIMEOUT: must be between 1ms and 4s"},
		// The embedded Redis of development mode has no replicas.
		{map[string]string{"BRIDGE_DEV": "true", "BRIDGE_REDIS_MIN_REPLICAS": "1"}, "BRIDGE_REDIS_MIN_REPLICAS: is 1, but development mode's embedded Redis has no replicas"},
	} {
		_, err := LoadFrom(context.Background(), env(tc.vars))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q…", tc.vars, err, tc.want)
		}
	}
	// BRIDGE_DEV with a real Redis waits on it like any deployment.
	if _, err := LoadFrom(context.Background(), env(map[string]string{"BRIDGE_DEV": "true", "BRIDGE_REDIS_URL": url, "BRIDGE_REDIS_MIN_REPLICAS": "1"})); err != nil {
		t.Errorf("development mode with a real Redis: %v", err)
	}
	// `run` with nothing configured is development mode too; the command decides.
	c, err = LoadFrom(context.Background(), env(map[string]string{"BRIDGE_REDIS_MIN_REPLICAS": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckMode("run"); err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_REDIS_MIN_REPLICAS") {
		t.Errorf("run with the embedded Redis: %v", err)
	}
	if err := c.CheckMode("serve"); err != nil {
		t.Errorf("serve: %v", err)
	}
}
