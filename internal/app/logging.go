package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationText}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationText writes a time.Duration as Go writes it ("24h0m0s", "1.5s"): slog's JSON handler
// would write its nanoseconds as a bare number (86400000000000), which reads as anything but a
// day. Call sites that want a number put the unit in the key instead (duration_ms).
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// One-shot commands: their own log level (LogLevelFor).
const (
	CmdBackfill   = "backfill"
	CmdReevaluate = "reevaluate"
)

// lookupEnv is os.LookupEnv; tests replace it.
var lookupEnv = os.LookupEnv

// LogLevelFor is the log level of command. A one-shot command (backfill, reevaluate) whose stderr
// is a terminal logs warnings and errors only: the operator watches its progress bar and report,
// not one JSON line per row. Redirected to a file or a pipe (a CI job, a log collector), and for
// the services, it logs at the configured level; BRIDGE_LOG_LEVEL, when set, always wins.
func LogLevelFor(command, configured string, stderr io.Writer) string {
	if command != CmdBackfill && command != CmdReevaluate {
		return configured
	}
	if _, set := lookupEnv("BRIDGE_LOG_LEVEL"); set || !isTerminal(stderr) {
		return configured
	}
	return "warn"
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
