package bench

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/app"
)

// TestMain makes the test binary a child bridge when started as one, as cmd/bridge-bench's main
// does: startChildBridge re-executes os.Executable(), which is this binary under go test.
func TestMain(m *testing.M) {
	if IsChildBridge(os.Args[1:]) {
		os.Exit(RunChildBridge(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestIsChildBridge(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"-child-bridge", "serve"}, true},
		{[]string{"--child-bridge=work"}, true},
		{[]string{"-quick", "-child-bridge", "serve"}, false},
		{[]string{"child-bridge", "serve"}, false},
		{[]string{"-child-bridges", "serve"}, false},
		{nil, false},
	} {
		if got := IsChildBridge(c.args); got != c.want {
			t.Errorf("IsChildBridge(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestChildEnvironReplacesBridgeVariables(t *testing.T) {
	got := childEnviron([]string{"PATH=/bin", "BRIDGE_REDIS_URL=redis://elsewhere", "BRIDGE_DEV=true", "GOGC=50"},
		map[string]string{"BRIDGE_REDIS_URL": "redis://here", "BRIDGE_LOG_LEVEL": "warn"})
	want := []string{"PATH=/bin", "GOGC=50", "BRIDGE_LOG_LEVEL=warn", "BRIDGE_REDIS_URL=redis://here"}
	if !slices.Equal(got, want) {
		t.Fatalf("childEnviron = %q, want %q", got, want)
	}
}

func TestChildLogKeepsLevelsAndTail(t *testing.T) {
	var out bytes.Buffer
	w := &childLog{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})), attrs: []any{"child", "serve"}}
	// Lines arrive split at arbitrary points, the last without its newline.
	for _, p := range []string{`{"time":"t","level":"ERROR","msg":"listener failed","err":"boom"}` + "\n" + `{"level":"IN`,
		`FO","msg":"bridge started"}` + "\n", "bridge: BRIDGE_REDIS_URL: not set"} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	got := out.String()
	for _, want := range []string{`level=ERROR msg="listener failed" err=boom child=serve`, `level=WARN msg="bridge: BRIDGE_REDIS_URL: not set" child=serve`} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "bridge started") {
		t.Errorf("an info line passed a warn logger: %q", got)
	}
	if note := w.tailNote(); !strings.Contains(note, "bridge started") || !strings.Contains(note, "not set") {
		t.Errorf("tail %q lacks the last lines", note)
	}
}

func TestProcCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	got, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got < 50*time.Millisecond || got > time.Hour {
		t.Fatalf("procCPU = %s after 100 ms of spinning", got)
	}
}

// A child bridge starts from its environment, takes webhooks on its fixed address, reports its
// peak RSS and stops cleanly on SIGTERM.
func TestChildBridgeServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and a bridge process")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH")
	}
	ctx := context.Background()
	rs, err := startRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.stop()
	mapping, err := writeMapping(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	br, err := startChildBridge(ctx, bridgeOptions{Command: app.CmdServe, RedisURL: rs.url(0), MappingFile: mapping,
		RateLimit: 10, Concurrency: 2}, log, "")
	if err != nil {
		t.Fatal(err)
	}
	defer br.kill()
	body, err := webhookBody(42)
	if err != nil {
		t.Fatal(err)
	}
	if err := postWebhook(ctx, http.DefaultClient, "http://"+br.httpAddr+"/v1/webhooks/openedx", body); err != nil {
		t.Fatal(err)
	}
	// Ticks of 10 ms: a child this young may not have used one yet.
	if cpu, err := br.cpu(); err != nil || cpu < 0 {
		t.Errorf("child CPU = %s, %v", cpu, err)
	}
	rss, err := br.stop()
	if err != nil {
		t.Fatalf("stop: %v (log: %s)", err, logged.String())
	}
	if rss < 1<<20 || rss > 1<<30 {
		t.Errorf("peak RSS %d bytes, want a plausible figure", rss)
	}
	if again, err := br.stop(); again != rss || err != nil {
		t.Errorf("second stop = %d, %v; want %d, nil", again, err, rss)
	}
	if err := br.cmd.Process.Signal(syscall.Signal(0)); err == nil {
		t.Error("the child still runs after stop")
	}
}

// A child that cannot start is reaped and its own words are in the error.
func TestChildBridgeStartFailureQuotesStderr(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a bridge process")
	}
	_, err := startChildBridge(context.Background(), bridgeOptions{Command: app.CmdServe, RedisURL: "redis://127.0.0.1:1/0",
		MappingFile: filepath.Join(t.TempDir(), "missing.yaml"), RateLimit: 10, Concurrency: 2},
		slog.New(slog.DiscardHandler), "")
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "BRIDGE_MAPPING_FILE") {
		t.Fatalf("err = %v; want an exit at start quoting BRIDGE_MAPPING_FILE", err)
	}
	t.Log(err)
}
