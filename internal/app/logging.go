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

// RedisLogger sends go-redis's internal messages (reconnects, pool errors) to slog, so that no
// raw go-redis line reaches the terminal and every line the process writes has its format.
// go-redis keeps one logger for the whole process: install it once, with redis.SetLogger, while
// the process is set up and before any client exists.
type RedisLogger struct {
	Log   *slog.Logger
	Level slog.Leveler // nil: warn
}

// Printf implements go-redis's internal logging interface.
func (r RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background() // the interface does not promise one
	}
	level := slog.LevelWarn
	if r.Level != nil {
		level = r.Level.Level()
	}
	r.Log.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "redis")
}
