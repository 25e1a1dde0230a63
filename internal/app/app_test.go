package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/testutil"
)

// lockedBuffer is the banner's writer: Run prints to it while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func loadConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	env["BRIDGE_HTTP_ADDR"], env["BRIDGE_ADMIN_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	cfg, err := config.LoadFrom(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs the app until the test ends and returns it once its listeners accept.
func start(t *testing.T, cfg config.Config, command string, banner io.Writer) *App {
	t.Helper()
	a := New(cfg, command, slog.New(slog.DiscardHandler), banner)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after SIGTERM: %v, want a clean exit", err)
		}
	})
	select {
	case <-a.Ready:
	case err := <-done:
		t.Fatalf("Run stopped before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready after 20 s")
	}
	return a
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Development mode with nothing configured: the banner's sample event, sent as printed, ends as
// an issued badge on the in-process sandbox host.
func TestDevModeAwardsTheSampleEvent(t *testing.T) {
	banner := &lockedBuffer{}
	a := start(t, loadConfig(t, map[string]string{}), CmdRun, banner)
	text := banner.String()
	webhookToken := regexp.MustCompile(`Throwaway webhook token: (\S+)`).FindStringSubmatch(text)
	adminToken := regexp.MustCompile(`Throwaway admin token:\s+(\S+)`).FindStringSubmatch(text)
	body := regexp.MustCompile(`--data '([^']+)'`).FindStringSubmatch(text)
	if webhookToken == nil || adminToken == nil || body == nil {
		t.Fatalf("banner lacks the tokens or the sample event:\n%s", text)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr+"/v1/webhooks/openedx", strings.NewReader(body[1]))
	req.Header.Set("Authorization", "Bearer "+webhookToken[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans struct{ Status, Message string }
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || ans.Status != "accepted" || ans.Message == "" {
		t.Fatalf("sample event: %d %+v", resp.StatusCode, ans)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, awards := get(t, "http://"+a.AdminAddr+"/v1/awards", adminToken[1]); strings.Contains(awards, `"state":"issued"`) {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("sample award not issued within 20 s: %s", awards)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serve with a real Redis: health on both listeners, the webhook only on the public one, the
// admin API and metrics only on the admin one.
func TestListenersServeTheirRoutes(t *testing.T) {
	srv := testutil.StartRedis(t)
	mapping := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mapping, []byte(testutil.TestMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	const admin = "admin-token-0123456789abcdef0123456789"
	a := start(t, loadConfig(t, map[string]string{
		"BRIDGE_REDIS_URL": srv.URL, "BRIDGE_MAPPING_FILE": mapping, "BRIDGE_ADMIN_TOKEN": admin,
		"BRIDGE_WEBHOOK_TOKENS": "webhook-token-0123456789abcdef0123456789",
	}), CmdServe, io.Discard)
	for _, c := range []struct {
		addr, path, token string
		want              int
	}{
		{a.HTTPAddr, "/healthz", "", 200}, {a.HTTPAddr, "/readyz", "", 200},
		{a.AdminAddr, "/healthz", "", 200}, {a.AdminAddr, "/readyz", "", 200},
		{a.AdminAddr, "/metrics", "", 200}, {a.HTTPAddr, "/metrics", "", 404},
		{a.AdminAddr, "/v1/status", admin, 200}, {a.HTTPAddr, "/v1/status", admin, 404},
		{a.AdminAddr, "/v1/webhooks/openedx", admin, 404},
	} {
		if code, body := get(t, "http://"+c.addr+c.path, c.token); code != c.want {
			t.Errorf("GET %s on %s: %d, want %d (%s)", c.path, c.addr, code, c.want, body)
		}
	}
}

// Outside development mode nothing falls back silently: serve without a mapping stops at once,
// naming the variable, before it connects to anything.
func TestServeWithoutMappingStops(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"BRIDGE_REDIS_URL": "redis://127.0.0.1:1/0"})
	err := New(cfg, CmdServe, slog.New(slog.DiscardHandler), io.Discard).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "BRIDGE_MAPPING_FILE") {
		t.Fatalf("serve without a mapping: %v", err)
	}
}
