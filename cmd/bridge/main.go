// Command bridge turns Open edX certificate and course-passing signals into Open Badges on a
// Badgr-compatible host. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/app"
	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/secret"
)

// Set with -ldflags "-X main.version=… -X main.commit=…" by release builds.
var (
	version = "dev"
	commit  = ""
)

const usage = `usage: bridge [command]

commands:
  run       web + workers in one process (the default; development mode when nothing is configured)
  serve     web only: webhooks, admin API, metrics, health
  work      workers, with health and metrics on the admin address
  check     validate configuration and the mapping file; --remote also checks Redis, the
            badge host (login, mapped badge classes) and the event-bus streams; exit 1 on problems
  backfill [--yes [--wait [--timeout DURATION]]] FILE
            award learners who earned certificates before the bridge existed: CSV with header
            user_id,email,course_key,mode,issued_on[,name][,grade] or JSON Lines of webhook
            bodies; without --yes it only prints what it would do; --wait follows the queued
            rows until each is issued, failed or unchanged (exit 1 if any failed or is pending)
  reevaluate [--yes] [--rule NAME]
            apply the current mapping to every learner the bridge has a record of: awards and
            revocations a new or changed rule makes due; without --yes it only prints them
  secret    print a new webhook signing secret, bearer token and query token, each as
            VARIABLE=value for BRIDGE_WEBHOOK_SECRETS, _TOKENS and _QUERY_TOKENS
  version   print version, commit and Go version

configuration comes from BRIDGE_* environment variables; see README.md`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := app.CmdRun
	if len(args) > 0 {
		cmd = args[0]
		args = args[1:]
	}
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "bridge %s commit %s %s\n", appVersion(), revision(), runtime.Version())
		return 0
	case "help", "--help", "-h":
		fmt.Fprintln(stdout, usage)
		return 0
	case "check":
		return check(args, stdout, stderr)
	case "backfill":
		return backfillCmd(args, stdout, stderr)
	case "reevaluate":
		return reevaluateCmd(args, stdout, stderr)
	case "secret":
		return secretCmd(args, stdout, stderr)
	case app.CmdRun, app.CmdServe, app.CmdWork:
	default:
		fmt.Fprintf(stderr, "bridge: unknown command %q\n%s\n", cmd, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, log, ok := setup(ctx, cmd, stdout, stderr)
	if !ok {
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.Error("bridge stopped with an error", "err", err.Error())
		return 1
	}
	return 0
}

// setup reads the configuration once (a bad value: one line naming it) and builds the logger
// and the App for cmd.
func setup(ctx context.Context, cmd string, stdout, stderr io.Writer) (*app.App, *slog.Logger, bool) {
	cfg, err := config.Load(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "bridge: %v\n", err)
		return nil, nil, false
	}
	log := app.NewLogger(stderr, app.LogLevelFor(cmd, cfg.LogLevel, stderr), cfg.LogFormat)
	// go-redis's logger is process-wide: set once, here, before any Redis client exists.
	redis.SetLogger(app.RedisLogger{Log: log})
	a := app.New(cfg, cmd, log, stdout)
	a.Version = appVersion()
	return a, log, true
}

// check validates configuration and mapping; with --remote also Redis, the badge host and the
// event-bus streams.
func check(args []string, stdout, stderr io.Writer) int {
	remote := false
	for _, a := range args {
		if a != "--remote" {
			fmt.Fprintf(stderr, "bridge check: unknown argument %q (want --remote or nothing)\n", a)
			return 2
		}
		remote = true
	}
	var problems []string
	cfg, err := config.Load(context.Background())
	if err != nil {
		problems = append(problems, err.Error())
	}
	var m *rules.Mapping
	switch {
	case cfg.MappingFile != "":
		if m, err = rules.Load(cfg.MappingFile); err != nil {
			problems = append(problems, err.Error())
		}
	case err == nil && !cfg.Dev:
		problems = append(problems, "BRIDGE_MAPPING_FILE: not set; without a mapping no event earns a badge")
	}
	if remote && len(problems) == 0 {
		// go-redis's logger is process-wide: set once, before any client exists. Its retry lines
		// would repeat what the check reports, so they show at debug level only.
		redis.SetLogger(app.RedisLogger{Log: app.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat), Level: slog.LevelDebug})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		problems = append(problems, app.CheckRemote(ctx, cfg, m, stdout)...)
	}
	for _, w := range m.WarningLines() {
		fmt.Fprintf(stderr, "bridge check: warning: %s\n", w)
	}
	if len(problems) > 0 {
		fmt.Fprintln(stderr, "bridge check: problems found:")
		for _, p := range problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		return 1
	}
	if remote {
		fmt.Fprintln(stdout, app.RemoteReady(cfg))
	} else if n := len(m.WarningLines()); n > 0 {
		fmt.Fprintf(stdout, "bridge check: configuration and mapping are valid, with %d warning(s) (see above)\n", n)
	} else {
		fmt.Fprintln(stdout, "bridge check: configuration and mapping are valid")
	}
	return 0
}

func backfillCmd(args []string, stdout, stderr io.Writer) int {
	const usage = "usage: bridge backfill [--yes [--wait [--timeout DURATION]]] FILE"
	var o app.BackfillOptions
	file := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		timeout, isTimeout := strings.CutPrefix(a, "--timeout=")
		if a == "--timeout" && i+1 < len(args) {
			i++
			timeout, isTimeout = args[i], true
		}
		switch {
		case a == "--yes":
			o.Apply = true
		case a == "--wait":
			o.Wait = true
		case isTimeout:
			d, err := time.ParseDuration(timeout)
			if err != nil || d <= 0 {
				fmt.Fprintf(stderr, "bridge backfill: --timeout: want a duration such as 30m, got %q\n%s\n", timeout, usage)
				return 2
			}
			o.Timeout = d
		case file == "" && !strings.HasPrefix(a, "-"):
			file = a
		default:
			fmt.Fprintf(stderr, "bridge backfill: unexpected argument %q\n%s\n", a, usage)
			return 2
		}
	}
	if file == "" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if (o.Wait || o.Timeout > 0) && !o.Apply {
		fmt.Fprintf(stderr, "bridge backfill: --wait follows what --yes records: give --yes too\n%s\n", usage)
		return 2
	}
	if o.Timeout > 0 && !o.Wait {
		fmt.Fprintf(stderr, "bridge backfill: --timeout limits --wait: give --wait too\n%s\n", usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, _, ok := setup(ctx, "backfill", stdout, stderr)
	if !ok {
		return 1
	}
	o.Out, o.Progress = stdout, stderr
	res, err := a.BackfillWith(ctx, file, o)
	if err != nil {
		fmt.Fprintf(stderr, "bridge backfill: %v\n", err)
		return 1
	}
	if res.Settled != nil && !res.Settled.Done() {
		// The summary above says which rows failed or are still pending.
		return 1
	}
	return 0
}

func reevaluateCmd(args []string, stdout, stderr io.Writer) int {
	const usage = "usage: bridge reevaluate [--yes] [--rule NAME]"
	apply, rule := false, ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--yes":
			apply = true
		case a == "--rule" && i+1 < len(args):
			i++
			rule = args[i]
		case strings.HasPrefix(a, "--rule="):
			rule = strings.TrimPrefix(a, "--rule=")
		default:
			fmt.Fprintf(stderr, "bridge reevaluate: unexpected argument %q\n%s\n", a, usage)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, _, ok := setup(ctx, "reevaluate", stdout, stderr)
	if !ok {
		return 1
	}
	if _, err := a.Reevaluate(ctx, rule, apply, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "bridge reevaluate: %v\n", err)
		return 1
	}
	return 0
}

// secretCmd prints new webhook credentials; it reads no configuration.
func secretCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "bridge secret: unexpected argument %q\nusage: bridge secret\n", args[0])
		return 2
	}
	s, err := secret.New()
	if err == nil {
		err = s.Write(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bridge secret: %v\n", err)
		return 1
	}
	return 0
}

// appVersion is the version set by the release build, else the module version Go recorded
// (`go install …/cmd/bridge@v1.2.3` records v1.2.3), else "dev".
func appVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return strings.TrimPrefix(bi.Main.Version, "v")
	}
	return version
}

func revision() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
