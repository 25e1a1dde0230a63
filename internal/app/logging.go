package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// NewLogger builds the process logger: JSON (or text) on w at the configured level. Nothing the
// bridge logs carries a secret or an e-mail address; callers name learners by user id.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// RedisLogger sends go-redis's internal messages (reconnects, pool errors) to slog, so every line
// the process writes is JSON. Install it once with redis.SetLogger.
type RedisLogger struct{ Log *slog.Logger }

// Printf implements go-redis's internal logging interface.
func (r RedisLogger) Printf(_ context.Context, format string, v ...any) {
	r.Log.Warn(fmt.Sprintf(format, v...), "component", "redis")
}
