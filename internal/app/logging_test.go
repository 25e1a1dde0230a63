package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRedisLoggerGoesThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "info", "json")
	RedisLogger{Log: log}.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts\n", 5)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["level"] != "WARN" || line["component"] != "redis" || line["msg"] != "redis: connection pool: failed to dial after 5 attempts" {
		t.Errorf("line %v", line)
	}

	// The check command lowers them to debug: hidden at the default level.
	buf.Reset()
	RedisLogger{Log: log, Level: slog.LevelDebug}.Printf(context.Background(), "redis: retrying")
	if buf.Len() != 0 {
		t.Errorf("a debug-level redis line shows at info: %q", buf.String())
	}
}

// A time.Duration reads as Go writes it, in JSON as in text, wherever it is logged (issue 12:
// a token lifetime showed as 86400000000000).
func TestDurationsLoggedAsText(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		NewLogger(&buf, "info", format).With("grace", 30*time.Second).Info("token", "expires_in", 24*time.Hour,
			slog.Group("wait", "for", 1500*time.Millisecond))
		out := buf.String()
		for _, want := range []string{"24h0m0s", "30s", "1.5s"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q missing in %s", format, want, out)
			}
		}
		if strings.Contains(out, "86400000000000") {
			t.Errorf("%s: nanoseconds in %s", format, out)
		}
	}
}

// One-shot commands log warnings only when stderr is a terminal, unless BRIDGE_LOG_LEVEL says
// otherwise; services and redirected output keep the configured level.
func TestLogLevelFor(t *testing.T) {
	// /dev/null is a character device, as a terminal is: what isTerminal looks at.
	tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer tty.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	env := map[string]string{}
	lookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	defer func() { lookupEnv = os.LookupEnv }()

	cases := []struct {
		cmd    string
		stderr io.Writer
		set    bool
		want   string
	}{
		{CmdBackfill, tty, false, "warn"},
		{CmdReevaluate, tty, false, "warn"},
		{CmdBackfill, pw, false, "info"},
		{CmdBackfill, &bytes.Buffer{}, false, "info"},
		{CmdBackfill, tty, true, "info"},
		{CmdRun, tty, false, "info"},
		{CmdWork, tty, false, "info"},
	}
	for _, c := range cases {
		delete(env, "BRIDGE_LOG_LEVEL")
		if c.set {
			env["BRIDGE_LOG_LEVEL"] = "info"
		}
		if got := LogLevelFor(c.cmd, "info", c.stderr); got != c.want {
			t.Errorf("%s, stderr %T, BRIDGE_LOG_LEVEL set %v: %q, want %q", c.cmd, c.stderr, c.set, got, c.want)
		}
	}
}
