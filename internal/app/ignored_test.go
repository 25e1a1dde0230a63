package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 12, wired: an event of a course no rule maps is answered ignored, counted by
// bridge_events_ignored_total{reason="no_rule"} on /metrics and warned about once.
func TestIgnoredEventCountedAndWarned(t *testing.T) {
	banner, logs := &lockedBuffer{}, &lockedBuffer{}
	a := New(loadConfig(t, map[string]string{}), CmdRun, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})), banner)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-a.Ready:
	case err := <-done:
		t.Fatalf("Run stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready after 20 s")
	}
	text := banner.String()
	webhookToken := regexp.MustCompile(`Throwaway webhook token: (\S+)`).FindStringSubmatch(text)
	body := regexp.MustCompile(`--data '([^']+)'`).FindStringSubmatch(text)
	if webhookToken == nil || body == nil {
		t.Fatalf("banner:\n%s", text)
	}
	unmapped := strings.ReplaceAll(body[1], "course-v1:OpenedX+DemoX+", "course-v1:Nobody+Maps+")
	if unmapped == body[1] {
		t.Fatalf("sample event names no demo course: %s", body[1])
	}
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr+"/v1/webhooks/openedx", strings.NewReader(unmapped))
		req.Header.Set("Authorization", "Bearer "+webhookToken[1])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if ans.Status != "ignored" && ans.Status != "duplicate" {
			t.Fatalf("unmapped event: %d %+v", resp.StatusCode, ans)
		}
	}
	_, metrics := get(t, "http://"+a.AdminAddr+"/metrics", "")
	for _, want := range []string{`bridge_events_ignored_total{reason="no_rule"} 1`, `bridge_events_ignored_total{reason="erased_learner"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(logs.String(), `"msg":"no rule maps course course-v1:Nobody+Maps+`); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
}
