package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/app"
	"github.com/badgebridge/bridge/internal/config"
)

// ChildBridgeFlag is cmd/bridge-bench's hidden flag: `-child-bridge <run|serve|work>` makes the
// process one bridge and nothing else, so that the bridge's memory can be measured apart from
// the fake host and the load generator. It must be the first argument.
const ChildBridgeFlag = "child-bridge"

// Bounds of a child bridge's life: the start covers Redis's first ping and the listeners; the
// stop covers BRIDGE_SHUTDOWN_GRACE (bridgeEnv: 20s) with room to spare.
const (
	childStartTime = 30 * time.Second
	childStopTime  = 40 * time.Second
	// childKillTime bounds the wait after SIGKILL, which only the kernel can delay.
	childKillTime = 10 * time.Second
	// childTailLines is how much of a child's stderr an error quotes.
	childTailLines = 12
)

// IsChildBridge tells whether args (without the program name) ask for a child bridge.
func IsChildBridge(args []string) bool {
	if len(args) == 0 {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
	return strings.HasPrefix(args[0], "-") && name == ChildBridgeFlag
}

// RunChildBridge runs one bridge role from the process environment as `bridge <command>` does
// (cmd/bridge's setup: config.Load, app.NewLogger, go-redis's process-wide logger, then
// app.New(...).Run until SIGTERM or SIGINT), logging to stderr. cmd/bridge's setup is in its
// main package, so its four lines are repeated here; the wiring itself is app.New's. It returns
// the process's exit code.
func RunChildBridge(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bridge-bench -"+ChildBridgeFlag, flag.ContinueOnError)
	fs.SetOutput(stderr)
	command := fs.String(ChildBridgeFlag, "", "the bridge command: run, serve or work")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !slices.Contains([]string{app.CmdRun, app.CmdServe, app.CmdWork}, *command) || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bridge-bench -%s: want run, serve or work and nothing after it, got %q %q\n",
			ChildBridgeFlag, *command, fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := config.Load(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "bridge: %v\n", err)
		return 1
	}
	log := app.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	// go-redis's logger is process-wide: set once, here, before any Redis client exists.
	redis.SetLogger(app.RedisLogger{Log: log})
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(stderr, "bridge-bench: cpu profile: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			fmt.Fprintf(stderr, "bridge-bench: cpu profile %s: %v\n", *profile, err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "bridge-bench: cpu profile %s: %v\n", *profile, err)
			}
		}()
	}
	if err := app.New(cfg, *command, log, stdout).Run(ctx); err != nil {
		log.Error("bridge stopped with an error", "err", err.Error())
		return 1
	}
	return 0
}

// childBridge is a bridge in a process of its own: this binary re-executed with
// -child-bridge, so its peak RSS and CPU are the bridge's alone.
type childBridge struct {
	command             string
	cmd                 *exec.Cmd
	pid                 int
	httpAddr, adminAddr string
	ready               time.Time // when /readyz first answered 200
	stderr              *childLog

	exited  chan struct{} // closed once Wait returned; waitErr is then set
	waitErr error

	stopOnce sync.Once
	peak     int64 // VmHWM read just before SIGTERM
	stopErr  error
}

// startChildBridge starts a bridge configured by bridgeEnv(o) in a process of its own and waits,
// bounded, until its /readyz answers 200. The child cannot report an ephemeral port back, so
// both listeners get fixed free loopback ports. profile, when set, is the child's CPU profile.
// log receives the child's log lines, at the level it enables.
func startChildBridge(ctx context.Context, o bridgeOptions, log *slog.Logger, profile string) (*childBridge, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("child bridge %s: own executable: %w", o.Command, err)
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("child bridge %s: %w", o.Command, err)
	}
	adminPort, err := freePort()
	for err == nil && adminPort == httpPort {
		adminPort, err = freePort()
	}
	if err != nil {
		return nil, fmt.Errorf("child bridge %s: %w", o.Command, err)
	}
	env := bridgeEnv(o)
	c := &childBridge{
		command:   o.Command,
		httpAddr:  "127.0.0.1:" + strconv.Itoa(httpPort),
		adminAddr: "127.0.0.1:" + strconv.Itoa(adminPort),
		stderr:    &childLog{log: log, attrs: []any{"child", o.Command}},
		exited:    make(chan struct{}),
	}
	env["BRIDGE_HTTP_ADDR"], env["BRIDGE_ADMIN_ADDR"] = c.httpAddr, c.adminAddr
	// The in-process bridges log through log, which filters by level; the child filters itself,
	// so that lines nobody reads are not even written.
	env["BRIDGE_LOG_LEVEL"], env["BRIDGE_LOG_FORMAT"] = "error", "json"
	if log.Enabled(ctx, slog.LevelWarn) {
		env["BRIDGE_LOG_LEVEL"] = "warn"
	}
	args := []string{"-" + ChildBridgeFlag, o.Command}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	// Not CommandContext: the child must live until stop has read its peak RSS.
	c.cmd = exec.Command(exe, args...)
	c.cmd.Env = childEnviron(os.Environ(), env)
	c.cmd.Stderr = c.stderr
	c.cmd.SysProcAttr = childProcAttr()
	// Bounds Wait should anything keep the stderr pipe open after the child exited.
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("child bridge %s: start %s: %w", o.Command, exe, err)
	}
	c.pid = c.cmd.Process.Pid
	go func() {
		c.waitErr = c.cmd.Wait()
		c.stderr.flush()
		close(c.exited)
	}()
	if err := c.waitReady(ctx); err != nil {
		c.kill()
		return nil, fmt.Errorf("child bridge %s (pid %d): %w%s", o.Command, c.pid, err, c.stderr.tailNote())
	}
	return c, nil
}

// childEnviron is this process's environment without any BRIDGE_ variable, plus env: the
// child's configuration is exactly the in-process bridges' (bridgeConfig reads env alone),
// while PATH, TMPDIR and the Go runtime's variables stay as the benchmark's.
func childEnviron(base []string, env map[string]string) []string {
	out := make([]string, 0, len(base)+len(env))
	for _, kv := range base {
		if !strings.HasPrefix(kv, config.Prefix) {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// waitReady polls the admin listener's /readyz (Redis answers and, for workers, the host login
// is not blocked: README, "Admin API") until it answers 200, the child exits, ctx ends or
// childStartTime passes. Both listeners are bound before either serves, so a ready admin
// listener means a bound public one.
func (c *childBridge) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	url := "http://" + c.adminAddr + "/readyz"
	deadline := time.NewTimer(childStartTime)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error // the latest answer that was not 200
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return fmt.Errorf("readyz request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				c.ready = time.Now()
				return nil
			}
			last = fmt.Errorf("/readyz answered %d", resp.StatusCode)
		} else {
			last = err
		}
		cancel()
		select {
		case <-c.exited:
			return fmt.Errorf("exited at start: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for /readyz: %w", context.Cause(ctx))
		case <-deadline.C:
			return fmt.Errorf("not ready within %s (last: %v)", childStartTime, last)
		case <-tick.C:
		}
	}
}

// kill ends the child at once and waits for it, bounded: the error paths use it.
func (c *childBridge) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	select {
	case <-c.exited:
	case <-time.After(childKillTime):
	}
}

// stop reads the child's peak RSS while it still runs, then stops it with SIGTERM as an
// orchestrator would and waits, bounded; past the bound it kills it. It returns the peak RSS
// (0 if unknown) and how the child ended. Safe to call again: later calls return the same.
func (c *childBridge) stop() (int64, error) {
	c.stopOnce.Do(func() {
		select {
		case <-c.exited:
			c.stopErr = fmt.Errorf("child bridge %s (pid %d) exited before it was stopped: %v%s",
				c.command, c.pid, c.waitErr, c.stderr.tailNote())
			return
		default:
		}
		c.peak = peakRSS(strconv.Itoa(c.pid))
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			c.kill()
			c.stopErr = fmt.Errorf("child bridge %s (pid %d): SIGTERM: %w", c.command, c.pid, err)
			return
		}
		select {
		case <-c.exited:
			if c.waitErr != nil {
				c.stopErr = fmt.Errorf("child bridge %s (pid %d) shutdown: %w%s", c.command, c.pid, c.waitErr, c.stderr.tailNote())
			}
		case <-time.After(childStopTime):
			c.kill()
			c.stopErr = fmt.Errorf("child bridge %s (pid %d) did not stop within %s of SIGTERM; killed%s",
				c.command, c.pid, childStopTime, c.stderr.tailNote())
		}
	})
	return c.peak, c.stopErr
}

// cpu is the child's user+system CPU so far, from /proc/<pid>/stat; the child must not have
// been reaped yet.
func (c *childBridge) cpu() (time.Duration, error) {
	return procCPU(c.pid)
}

// procCPU reads utime+stime of a process from /proc/<pid>/stat. They count in USER_HZ ticks,
// which Linux fixes at 100 per second on every architecture Go supports.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("process %d CPU: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces or parentheses itself.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d CPU: unexpected /proc stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11] and f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("process %d CPU: short /proc stat %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("process %d CPU: /proc stat field %q: %w", pid, s, err)
		}
		ticks += n
	}
	const userHZ = 100
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// childLog takes a child's stderr line by line: it logs each line through log (the child logs
// JSON, so a line keeps its level and attributes) and keeps the last few for error messages.
type childLog struct {
	log   *slog.Logger
	attrs []any

	mu      sync.Mutex
	partial []byte
	tail    []string
}

// maxChildLine bounds a line held while waiting for its newline; a longer one is cut there.
const maxChildLine = 64 << 10

func (w *childLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > maxChildLine {
		w.line(w.partial)
		w.partial = nil
	}
	// The slice would otherwise keep every line ever written alive through its backing array.
	if len(w.partial) == 0 {
		w.partial = nil
	}
	return len(p), nil
}

// flush takes a last line without a newline, once the child has exited.
func (w *childLog) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(w.partial)
		w.partial = nil
	}
}

// line handles one line; w.mu is held.
func (w *childLog) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	s := string(b)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	w.tail = append(w.tail, s)
	if len(w.tail) > childTailLines {
		w.tail = w.tail[len(w.tail)-childTailLines:]
	}
	level, msg, attrs := parseLogLine(b)
	w.log.Log(context.Background(), level, msg, append(attrs, w.attrs...)...)
}

// parseLogLine reads a JSON line of app.NewLogger into its level, message and other attributes
// (by name, so that lines compare); anything else is a warning with the line as its message,
// since a child writes raw text only when something went wrong before its logger existed.
func parseLogLine(b []byte) (slog.Level, string, []any) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return slog.LevelWarn, string(b), nil
	}
	level := slog.LevelInfo
	if s, ok := m[slog.LevelKey].(string); ok {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			level = slog.LevelWarn
		}
	}
	msg, _ := m[slog.MessageKey].(string)
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != slog.TimeKey && k != slog.LevelKey && k != slog.MessageKey {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	attrs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		attrs = append(attrs, k, m[k])
	}
	return level, msg, attrs
}

// tailNote is the last lines of the child's stderr for an error message, or nothing.
func (w *childLog) tailNote() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) == 0 {
		return ""
	}
	return "; its stderr ended: " + strings.Join(w.tail, " | ")
}
