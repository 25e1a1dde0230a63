package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/mapping"
)

// CheckRemote runs the `bridge check --remote` checks: the queue Redis (version, eviction,
// persistence), one login to the badge host and every mapped badge class, and the event-bus
// streams. Facts go to out; problems are returned, one line each.
func CheckRemote(ctx context.Context, cfg config.Config, m *mapping.Mapping, out io.Writer) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	if err := cfg.RequireQueue(); err != nil {
		add("%v", err)
	} else if rdb, err := openRedis(cfg); err != nil {
		add("%v", err)
	} else {
		defer rdb.Close()
		for _, p := range checkQueueRedis(ctx, rdb, out) {
			add("queue Redis: %s", p)
		}
		if cfg.BadgrURL == "" {
			add("%v", cfg.RequireBadgeHost())
		} else {
			for _, p := range checkHost(ctx, cfg, rdb, m, out) {
				add("badge host: %s", p)
			}
		}
	}
	if cfg.EventBusRedisURL != "" {
		for _, p := range checkStreams(ctx, cfg, out) {
			add("event bus: %s", p)
		}
	}
	return problems
}

func checkQueueRedis(ctx context.Context, rdb redis.UniversalClient, out io.Writer) []string {
	var problems []string
	info, err := rdb.Info(ctx, "server", "persistence").Result()
	if err != nil {
		return []string{"unreachable: " + err.Error()}
	}
	fields := parseInfo(info)
	version := fields["redis_version"]
	fmt.Fprintf(out, "queue Redis: version %s\n", version)
	if !versionAtLeast(version, 6, 2) {
		problems = append(problems, fmt.Sprintf("version %s: asynq needs 6.2 or newer", version))
	}
	if policy, err := configGet(ctx, rdb, "maxmemory-policy"); err != nil {
		fmt.Fprintf(out, "queue Redis: maxmemory-policy unknown (CONFIG GET refused: %v); it must be noeviction\n", err)
	} else if policy != "noeviction" {
		problems = append(problems, fmt.Sprintf("maxmemory-policy is %s: set noeviction, or Redis may silently drop queued work", policy))
	}
	aof := fields["aof_enabled"] == "1"
	fsync, _ := configGet(ctx, rdb, "appendfsync")
	save, _ := configGet(ctx, rdb, "save")
	switch {
	case aof && fsync == "always":
		fmt.Fprintln(out, "queue Redis: AOF with appendfsync always: an accepted event survives a Redis crash")
	case aof:
		fmt.Fprintf(out, "queue Redis: AOF with appendfsync %s: a Redis crash can lose about the last second of accepted events; use appendfsync always where that matters\n", fsync)
	case strings.TrimSpace(save) != "":
		problems = append(problems, "only RDB snapshots are on: a crash loses everything since the last snapshot; turn on appendonly yes")
	default:
		problems = append(problems, "persistence is off: a restart loses the ledger and the queue; turn on appendonly yes")
	}
	return problems
}

func checkHost(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, m *mapping.Mapping, out io.Writer) []string {
	// A key prefix of its own: the check logs in afresh (proving the credentials) without using
	// or rotating the token the running bridge shares.
	prefix := "bb:check:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	defer func() {
		if keys, err := rdb.Keys(context.WithoutCancel(ctx), prefix+"*").Result(); err == nil && len(keys) > 0 {
			rdb.Del(context.WithoutCancel(ctx), keys...)
		}
	}()
	c := badgr.New(badgr.Config{
		BaseURL: cfg.BadgrURL, Username: cfg.BadgrUsername, Password: cfg.BadgrPassword,
		ClientID: cfg.BadgrClientID, ClientSecret: cfg.BadgrClientSecret, Scope: cfg.BadgrScope,
		Timeout: cfg.BadgrTimeout, KeyPrefix: prefix,
	}, rdb, slog.New(slog.DiscardHandler))
	if err := c.Login(ctx); err != nil {
		return []string{"login failed: " + err.Error()}
	}
	fmt.Fprintf(out, "badge host: logged in to %s\n", cfg.BadgrURL)
	var problems []string
	if m == nil {
		return problems
	}
	for _, r := range m.Rules {
		ok, err := c.BadgeClassExists(ctx, r.BadgeClass)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("badge class %s (rule %q, line %d): %v", r.BadgeClass, r.Name, r.Line, err))
		case !ok:
			problems = append(problems, fmt.Sprintf("badge class %s (rule %q, line %d) not found, or not visible to this account", r.BadgeClass, r.Name, r.Line))
		}
	}
	if len(problems) == 0 {
		fmt.Fprintf(out, "badge host: all %d mapped badge classes exist\n", len(m.Rules))
	}
	return problems
}

func checkStreams(ctx context.Context, cfg config.Config, out io.Writer) []string {
	opt, err := redis.ParseURL(cfg.EventBusRedisURL)
	if err != nil {
		return []string{"BRIDGE_EVENTBUS_REDIS_URL: not a valid Redis URL"}
	}
	bus := redis.NewClient(opt)
	defer bus.Close()
	var problems []string
	for _, s := range cfg.EventBusStreams {
		typ, err := bus.Type(ctx, s).Result()
		switch {
		case err != nil:
			return []string{"unreachable: " + err.Error()}
		case typ == "none":
			problems = append(problems, fmt.Sprintf("stream %s does not exist: is the LMS producing to it (settings and topic prefix)?", s))
		case typ != "stream":
			problems = append(problems, fmt.Sprintf("key %s is a %s, not a stream", s, typ))
		default:
			n, _ := bus.XLen(ctx, s).Result()
			fmt.Fprintf(out, "event bus: stream %s holds %d entries\n", s, n)
		}
	}
	return problems
}

func parseInfo(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

func configGet(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	m, err := rdb.ConfigGet(ctx, key).Result()
	if err != nil {
		return "", err
	}
	return m[key], nil
}

// versionAtLeast compares a Redis version string such as 7.0.15 with major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
