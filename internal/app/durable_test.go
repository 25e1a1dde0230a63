package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/badgebridge/bridge/internal/testutil"
)

const demoMapping = "badges:\n  - name: Demo\n    badge_class: " + DemoBadgeClass + "\n    when:\n      courses: [\"course-v1:OpenedX+DemoX+*\"]\n"

// With BRIDGE_REDIS_MIN_REPLICAS the service's webhook answers 200 while a replica acknowledges,
// and 503 with Retry-After and a message that says why once it does not.
func TestWebhookAnswers503WithoutReplicas(t *testing.T) {
	primary := testutil.StartRedis(t, "--repl-diskless-sync-delay", "0") // a replica in sync at once
	replica := testutil.StartReplica(t, primary)
	mapping := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mapping, []byte(demoMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "webhook-token-0123456789abcdef0123456789"
	a := start(t, loadConfig(t, map[string]string{
		"BRIDGE_REDIS_URL": primary.URL, "BRIDGE_MAPPING_FILE": mapping, "BRIDGE_WEBHOOK_TOKENS": token,
		"BRIDGE_REDIS_MIN_REPLICAS": "1", "BRIDGE_REDIS_WAIT_TIMEOUT": "300ms",
	}), CmdServe, io.Discard)
	post := func(id string) (int, string, string) {
		body := strings.Replace(sampleEvent, "3e068212-1c24-11ef-9a57-0242ac120005", id, 1)
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr+"/v1/webhooks/openedx", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct{ Status, Message string }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans.Status + " " + ans.Message, resp.Header.Get("Retry-After")
	}
	if code, ans, _ := post("dur-app-1"); code != http.StatusOK || !strings.HasPrefix(ans, "accepted") {
		t.Fatalf("with a replica: %d %s", code, ans)
	}
	replica.Stop()
	code, ans, retry := post("dur-app-2")
	if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(ans, "not confirmed by enough Redis replicas") {
		t.Fatalf("without a replica: %d %q (Retry-After %q), want 503 saying the write was not confirmed", code, ans, retry)
	}
}

// check --remote says which durability applies and whether BRIDGE_REDIS_MIN_REPLICAS can be met.
// (WAITAOF needs Redis 7.2, which this machine may not have: its lines are tested in
// internal/durable with a fake server.)
func TestCheckDurability(t *testing.T) {
	primary := testutil.StartRedis(t, "--repl-diskless-sync-delay", "0") // a replica in sync at once
	testutil.StartReplica(t, primary)
	ctx := context.Background()
	for _, tc := range []struct {
		min      string
		line     string
		problems int
	}{
		{"0", "queue Redis: durability: neither: an answer means the primary accepted the write", 0},
		{"1", "queue Redis: durability: replicas: waits for 1 replica (WAIT)", 0},
		{"2", "queue Redis: durability: replicas: waits for 2 replicas (WAIT)", 1},
	} {
		cfg := loadConfig(t, map[string]string{"BRIDGE_REDIS_URL": primary.URL, "BRIDGE_REDIS_MIN_REPLICAS": tc.min})
		var out strings.Builder
		problems := checkDurability(ctx, cfg, primary.Client(t), &out)
		if !strings.Contains(out.String(), tc.line) || len(problems) != tc.problems {
			t.Errorf("MIN_REPLICAS=%s: printed %q, problems %v; want %q and %d problem(s)", tc.min, out.String(), problems, tc.line, tc.problems)
		}
	}
}

// Development mode's embedded Redis has no replicas: `run` with nothing configured but
// BRIDGE_REDIS_MIN_REPLICAS stops at once, naming the variable.
func TestMinReplicasRefusedWithTheEmbeddedRedis(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"BRIDGE_REDIS_MIN_REPLICAS": "1"})
	err := New(cfg, CmdRun, slog.New(slog.DiscardHandler), io.Discard).Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_REDIS_MIN_REPLICAS") {
		t.Fatalf("run in development mode with BRIDGE_REDIS_MIN_REPLICAS=1: %v", err)
	}
}
