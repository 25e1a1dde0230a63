package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

func TestCheckRemote(t *testing.T) {
	// KEYS is denied, as a cautious operator may do: the check must clean up without it.
	good := testutil.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always",
		"--user", "default", "on", "nopass", "~*", "&*", "+@all", "-keys")
	volatile := testutil.StartRedis(t, "--maxmemory-policy", "allkeys-lru")
	bus := testutil.StartRedis(t)
	if err := bus.Client(t).XGroupCreateMkStream(context.Background(), "dev-learning-certificate-lifecycle", "x", "$").Err(); err != nil {
		t.Fatal(err)
	}
	sb := sandbox.New(sandbox.Options{Username: "svc", Password: "pw-0123456789", BadgeClasses: []string{"CheckClass000000000001"}})
	host := httptest.NewServer(sb)
	defer host.Close()
	dir := t.TempDir()
	mapping := filepath.Join(dir, "m.yaml")
	os.WriteFile(mapping, []byte("badges:\n  - name: A\n    badge_class: CheckClass000000000001\n    when:\n      courses: [\"course-v1:O+C+*\"]\n"), 0o600)
	missing := filepath.Join(dir, "missing.yaml")
	os.WriteFile(missing, []byte("badges:\n  - name: B\n    badge_class: NoSuchClass0000000001\n    when:\n      courses: [\"course-v1:O+C+*\"]\n"), 0o600)

	run := func(env ...string) (int, string) {
		cmd := exec.Command(testutil.Bridge(t), "check", "--remote")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "BRIDGE_BADGR_URL=" + host.URL,
			"BRIDGE_BADGR_USERNAME=svc", "BRIDGE_BADGR_PASSWORD=pw-0123456789"}, env...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	code, out := run("BRIDGE_REDIS_URL="+good.URL, "BRIDGE_MAPPING_FILE="+mapping,
		"BRIDGE_EVENTBUS_REDIS_URL="+bus.URL, "BRIDGE_EVENTBUS_STREAMS=dev-learning-certificate-lifecycle")
	if code != 0 || !strings.Contains(out, "appendfsync always") || !strings.Contains(out, "badge host and event bus are ready") {
		t.Fatalf("good setup: exit %d\n%s", code, out)
	}
	if keys, _, err := good.Client(t).Scan(context.Background(), 0, "*check*", 1000).Result(); err != nil || len(keys) > 0 {
		t.Fatalf("the check left keys behind: %v %v", keys, err)
	}
	// Without an event bus configured, none is mentioned.
	code, out = run("BRIDGE_REDIS_URL="+good.URL, "BRIDGE_MAPPING_FILE="+mapping)
	if code != 0 || strings.Contains(out, "event bus") || !strings.Contains(out, "queue Redis and badge host are ready") {
		t.Fatalf("good setup without an event bus: exit %d\n%s", code, out)
	}
	// An unreachable queue Redis is said once; the badge host, which needs it, is not checked
	// (and not reported as a login failure); the event bus still is; no go-redis line shows.
	down := testutil.StartRedis(t)
	down.Stop()
	code, out = run("BRIDGE_REDIS_URL="+down.URL, "BRIDGE_MAPPING_FILE="+mapping,
		"BRIDGE_EVENTBUS_REDIS_URL="+bus.URL, "BRIDGE_EVENTBUS_STREAMS=dev-learning-certificate-lifecycle")
	if code != 1 || strings.Count(out, "unreachable") != 1 || !strings.Contains(out, "queue Redis: unreachable") ||
		strings.Contains(out, "login") || !strings.Contains(out, "badge host: not checked") ||
		!strings.Contains(out, "stream dev-learning-certificate-lifecycle holds") ||
		strings.Contains(out, "pool.go") || strings.Contains(out, "redis: 20") || strings.Contains(out, "connection pool") {
		t.Fatalf("queue Redis down: exit %d\n%s", code, out)
	}
	code, out = run("BRIDGE_REDIS_URL="+good.URL, "BRIDGE_MAPPING_FILE="+missing)
	if code != 1 || !strings.Contains(out, "NoSuchClass0000000001") || !strings.Contains(out, "line 2") {
		t.Fatalf("missing badge class: exit %d\n%s", code, out)
	}
	// Last: a wrong password makes the host throttle this account's logins, as Badgr does.
	code, out = run("BRIDGE_REDIS_URL="+volatile.URL, "BRIDGE_MAPPING_FILE="+missing,
		"BRIDGE_EVENTBUS_REDIS_URL="+bus.URL, "BRIDGE_BADGR_PASSWORD=wrong-password")
	if code != 1 {
		t.Fatalf("bad setup: exit %d\n%s", code, out)
	}
	for _, want := range []string{"maxmemory-policy is allkeys-lru", "persistence is off", "login failed", "dev-learning-badges-lifecycle does not exist"} {
		if !strings.Contains(out, want) {
			t.Errorf("bad setup output lacks %q:\n%s", want, out)
		}
	}
}
