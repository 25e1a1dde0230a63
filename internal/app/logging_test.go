package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
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
