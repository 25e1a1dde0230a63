package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/badgebridge/bridge/internal/app"
	"github.com/badgebridge/bridge/internal/config"
)

const (
	benchCourse = "course-v1:Bench+Bridge+2025"
	benchClass  = "BenchClass00000000000001"
	// benchToken is the webhook bearer token (the bridge wants at least 32 characters).
	benchToken = "bench-token-0123456789abcdef0123456789"
	certStream = "bench-learning-certificate-lifecycle"
)

// mappingYAML maps the benchmark's course to its one badge class.
const mappingYAML = `badges:
  - name: bench
    badge_class: ` + benchClass + `
    when:
      courses: ["` + benchCourse + `"]
    narrative: "Completed {{.CourseKey}}"
`

// writeMapping writes the mapping file into dir and returns its path.
func writeMapping(dir string) (string, error) {
	p := filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(p, []byte(mappingYAML), 0o600); err != nil {
		return "", fmt.Errorf("write mapping: %w", err)
	}
	return p, nil
}

// bridgeOptions is what a phase changes in the bridge's configuration.
type bridgeOptions struct {
	Command     string // app.CmdRun, app.CmdServe or app.CmdWork (not read by bridgeConfig)
	RedisURL    string
	MappingFile string
	Host        *fakeHost // nil: no badge host (serve)
	RateLimit   int
	Concurrency int
	EventBus    bool // consume certStream from the queue Redis, oldest first
}

// runningBridge is one in-process bridge.
type runningBridge struct {
	app    *app.App
	cancel context.CancelFunc
	done   chan error
	ready  time.Time
}

// bridgeEnv is the environment a bridge configured by o would be started with: the service
// roles and the backfill command read the same one, as they would on one host.
func bridgeEnv(o bridgeOptions) map[string]string {
	env := map[string]string{
		"BRIDGE_HTTP_ADDR":          "127.0.0.1:0",
		"BRIDGE_ADMIN_ADDR":         "127.0.0.1:0",
		"BRIDGE_REDIS_URL":          o.RedisURL,
		"BRIDGE_MAPPING_FILE":       o.MappingFile,
		"BRIDGE_WEBHOOK_TOKENS":     benchToken,
		"BRIDGE_BADGR_RATE_LIMIT":   strconv.Itoa(o.RateLimit),
		"BRIDGE_WORKER_CONCURRENCY": strconv.Itoa(o.Concurrency),
		"BRIDGE_SHUTDOWN_GRACE":     "20s",
		"BRIDGE_LOG_LEVEL":          "warn",
	}
	if o.Host != nil {
		env["BRIDGE_BADGR_URL"] = o.Host.url
		env["BRIDGE_BADGR_USERNAME"] = o.Host.user
		env["BRIDGE_BADGR_PASSWORD"] = o.Host.pass
	}
	if o.EventBus {
		env["BRIDGE_EVENTBUS_REDIS_URL"] = o.RedisURL
		env["BRIDGE_EVENTBUS_STREAMS"] = certStream
		env["BRIDGE_EVENTBUS_START"] = "oldest"
	}
	return env
}

// bridgeConfig reads bridgeEnv(o) through config.LoadFrom, exactly as the bridge reads its
// environment, so the benchmark measures the configuration an operator would get.
func bridgeConfig(ctx context.Context, o bridgeOptions) (config.Config, error) {
	env := bridgeEnv(o)
	cfg, err := config.LoadFrom(ctx, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		return config.Config{}, fmt.Errorf("bridge configuration: %w", err)
	}
	return cfg, nil
}

// startBridge configures the bridge through bridgeConfig, runs it in this process and waits
// until its listeners accept connections.
func startBridge(ctx context.Context, o bridgeOptions, log *slog.Logger) (*runningBridge, error) {
	cfg, err := bridgeConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b := &runningBridge{app: app.New(cfg, o.Command, log, io.Discard), cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- b.app.Run(rctx) }()
	select {
	case <-b.app.Ready:
		b.ready = time.Now()
		return b, nil
	case err := <-b.done:
		cancel()
		return nil, fmt.Errorf("bridge %s exited at start: %w", o.Command, err)
	case <-ctx.Done():
		b.stop()
		return nil, context.Cause(ctx)
	case <-time.After(30 * time.Second):
		b.stop()
		return nil, fmt.Errorf("bridge %s not ready within 30s", o.Command)
	}
}

// stop shuts the bridge down as SIGTERM would and waits for it.
func (b *runningBridge) stop() error {
	b.cancel()
	select {
	case err := <-b.done:
		if err != nil {
			return fmt.Errorf("bridge shutdown: %w", err)
		}
		return nil
	case <-time.After(40 * time.Second):
		return fmt.Errorf("bridge did not stop within 40s")
	}
}
