package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/durable"
	"github.com/badgebridge/bridge/internal/rules"
)

// CheckRemote runs the `bridge check --remote` checks: the queue Redis (version, eviction,
// persistence), one login to the badge host and every mapped badge class, and the event-bus
// streams when an event bus is configured. Facts go to out; problems are returned, one line each.
// A queue Redis that cannot be reached is reported once: the badge-host checks need it (the
// client keeps its token, rate limit and login block there), so they are skipped, not failed.
func CheckRemote(ctx context.Context, cfg config.Config, m *rules.Mapping, out io.Writer) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	queueUp := false
	if err := cfg.RequireQueue(); err != nil {
		add("%v", err)
	} else if rdb, err := openRedis(cfg); err != nil {
		add("%v", err)
	} else {
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			add("queue Redis: unreachable: %v", err)
		} else {
			queueUp = true
			for _, p := range checkQueueRedis(ctx, rdb, out) {
				add("queue Redis: %s", p)
			}
			for _, p := range checkDurability(ctx, cfg, rdb, out) {
				add("queue Redis: %s", p)
			}
			if cfg.BadgrURL != "" {
				for _, p := range checkHost(ctx, cfg, rdb, m, out) {
					add("badge host: %s", p)
				}
			}
		}
	}
	switch {
	case cfg.BadgrURL == "":
		add("%v", cfg.RequireBadgeHost())
	case !queueUp:
		fmt.Fprintln(out, "badge host: not checked: logging in needs the queue Redis")
	}
	switch {
	case cfg.EventBusRedisURL == "":
	case !queueUp && cfg.EventBusRedisURL == cfg.RedisURL:
		fmt.Fprintln(out, "event bus: not checked: it is the queue Redis")
	default:
		for _, p := range checkStreams(ctx, cfg, out) {
			add("event bus: %s", p)
		}
	}
	return problems
}

// RemoteReady is the line `bridge check --remote` ends with when it found nothing wrong; it names
// the event bus only when one is configured.
func RemoteReady(cfg config.Config) string {
	if cfg.EventBusRedisURL != "" {
		return "bridge check: configuration, mapping, queue Redis, badge host and event bus are ready"
	}
	return "bridge check: configuration, mapping, queue Redis and badge host are ready"
}

func checkQueueRedis(ctx context.Context, rdb redis.UniversalClient, out io.Writer) []string {
	var problems []string
	// One section per INFO: Redis before 7.0 takes only one.
	fields := map[string]string{}
	for _, section := range []string{"server", "persistence"} {
		info, err := rdb.Info(ctx, section).Result()
		if err != nil {
			return []string{"INFO refused: " + err.Error()}
		}
		maps.Copy(fields, durable.ParseInfo(info))
	}
	version := fields["redis_version"]
	fmt.Fprintf(out, "queue Redis: version %s\n", version)
	if !durable.VersionAtLeast(version, 6, 2) {
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

// checkDurability says which durability an answered event has (contract 5: fsync, replicas,
// both or neither) and whether BRIDGE_REDIS_MIN_REPLICAS can be met.
func checkDurability(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, out io.Writer) []string {
	g := durable.Open(rdb, durable.Options{MinReplicas: cfg.RedisMinReplicas, Timeout: cfg.RedisWaitTimeout, Prefix: keyPrefix})
	// A failed detection is described ("unknown: …"); checkQueueRedis already reports INFO refused.
	_ = g.Detect(ctx)
	fmt.Fprintf(out, "queue Redis: durability: %s\n", g.Describe())
	return g.Problems()
}

func checkHost(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, m *rules.Mapping, out io.Writer) []string {
	// A key prefix of its own: the check logs in afresh (proving the credentials) without using
	// or rotating the token the running bridge shares. The hash tag keeps the client's keys in one
	// Redis Cluster slot, as its scripts need.
	prefix := "{bb:check:" + strconv.FormatInt(time.Now().UnixNano(), 36) + "}:"
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = deleteByPrefix(cctx, rdb, prefix)
	}()
	c := badgr.New(badgr.Config{
		BaseURL: cfg.BadgrURL, Username: cfg.BadgrUsername, Password: cfg.BadgrPassword,
		ClientID: cfg.BadgrClientID, ClientSecret: cfg.BadgrClientSecret, Scope: cfg.BadgrScope,
		Timeout: cfg.BadgrTimeout, KeyPrefix: prefix,
	}, rdb, slog.New(slog.DiscardHandler))
	if err := c.Login(ctx); err != nil {
		var lb *badgr.LoginBlockedError
		var he *badgr.HostError
		if errors.As(err, &lb) || errors.As(err, &he) {
			return []string{"login failed: " + err.Error()}
		}
		// Not the host's answer: the queue Redis (or the check's own deadline) failed meanwhile.
		return []string{"login not checked: " + err.Error()}
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

// deleteByPrefix removes the keys under prefix with SCAN (never KEYS, which blocks Redis for as
// long as it walks the whole keyspace), on every primary of a cluster.
func deleteByPrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	pattern := escapeGlob(prefix) + "*"
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 100).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return fmt.Errorf("delete %s*: %w", prefix, err)
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s*: %w", prefix, err)
		}
		return nil
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, rdb)
}

// escapeGlob quotes the characters SCAN's MATCH pattern treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
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

func configGet(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	m, err := rdb.ConfigGet(ctx, key).Result()
	if err != nil {
		return "", err
	}
	return m[key], nil
}
