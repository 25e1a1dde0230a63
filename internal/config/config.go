// Package config reads the bridge's configuration from the environment once, at start, into a
// plain struct that the rest of the program receives.
package config

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Config is everything contract section 3 names. Secrets may also come from *_FILE variables.
type Config struct {
	HTTPAddr  string `env:"HTTP_ADDR, default=:8080"`
	AdminAddr string `env:"ADMIN_ADDR, default=127.0.0.1:8081"`
	Dev       bool   `env:"DEV, default=false"`

	RedisURL            string   `env:"REDIS_URL"`
	RedisSentinelMaster string   `env:"REDIS_SENTINEL_MASTER"`
	RedisSentinelAddrs  []string `env:"REDIS_SENTINEL_ADDRS"`
	RedisClusterAddrs   []string `env:"REDIS_CLUSTER_ADDRS"`
	// RedisMinReplicas is how many replicas must acknowledge an event's writes (WAIT) before it
	// is answered or acknowledged, so a failover keeps it; 0: none.
	RedisMinReplicas int `env:"REDIS_MIN_REPLICAS, default=0"`
	// RedisWaitTimeout bounds each durability wait (WAIT, WAITAOF); past it the answer is 503.
	RedisWaitTimeout time.Duration `env:"REDIS_WAIT_TIMEOUT, default=1s"`

	BadgrURL          string        `env:"BADGR_URL"`
	BadgrUsername     string        `env:"BADGR_USERNAME"`
	BadgrPassword     string        `env:"BADGR_PASSWORD"`
	BadgrClientID     string        `env:"BADGR_CLIENT_ID, default=public"`
	BadgrClientSecret string        `env:"BADGR_CLIENT_SECRET"`
	BadgrScope        string        `env:"BADGR_SCOPE, default=rw:issuer"`
	BadgrRateLimit    int           `env:"BADGR_RATE_LIMIT, default=10"`
	BadgrTimeout      time.Duration `env:"BADGR_TIMEOUT, default=15s"`

	MappingFile string `env:"MAPPING_FILE"`

	WebhookSecrets     []string `env:"WEBHOOK_SECRETS"`
	WebhookTokens      []string `env:"WEBHOOK_TOKENS"`
	WebhookQueryTokens []string `env:"WEBHOOK_QUERY_TOKENS"`
	AdminToken         string   `env:"ADMIN_TOKEN"`
	// WebhookMaxInflight caps webhook requests handled at once; the rest get 503 and retry.
	WebhookMaxInflight int `env:"WEBHOOK_MAX_INFLIGHT, default=256"`

	WorkerConcurrency int           `env:"WORKER_CONCURRENCY, default=10"`
	MaxRetry          int           `env:"MAX_RETRY, default=12"`
	ShutdownGrace     time.Duration `env:"SHUTDOWN_GRACE, default=30s"`
	Settle            time.Duration `env:"SETTLE, default=5m"`

	EventBusRedisURL string   `env:"EVENTBUS_REDIS_URL"`
	EventBusStreams  []string `env:"EVENTBUS_STREAMS, default=dev-learning-certificate-lifecycle,dev-learning-badges-lifecycle"`
	EventBusGroup    string   `env:"EVENTBUS_GROUP, default=badge-bridge"`
	EventBusStart    string   `env:"EVENTBUS_START, default=newest"`
	// EventBusBadgeStream is where the bridge announces its own awards and revocations
	// (contract 9.4) on the event-bus Redis; empty: off.
	EventBusBadgeStream string `env:"EVENTBUS_BADGE_STREAM"`

	// LearnerRecord says which course runs the learner record keeps: mapped or all.
	LearnerRecord string `env:"LEARNER_RECORD, default=mapped"`

	EventRetention time.Duration `env:"EVENT_RETENTION, default=720h"`
	LogLevel       string        `env:"LOG_LEVEL, default=info"`
	LogFormat      string        `env:"LOG_FORMAT, default=json"`
}

// secretVars may be given as BRIDGE_<NAME>_FILE, a path whose content is the value; that keeps
// secrets out of the process environment and out of `kubectl describe`.
var secretVars = []string{
	"REDIS_URL", "BADGR_USERNAME", "BADGR_PASSWORD", "BADGR_CLIENT_SECRET", "WEBHOOK_SECRETS",
	"WEBHOOK_TOKENS", "WEBHOOK_QUERY_TOKENS", "ADMIN_TOKEN", "EVENTBUS_REDIS_URL",
}

// Prefix is the environment prefix of every variable.
const Prefix = "BRIDGE_"

const (
	// maxMinReplicas is far above any real deployment: a typo, not a topology.
	maxMinReplicas = 100
	// maxRedisWaitTimeout keeps two waits (fsync, then replicas) inside a webhook's 10s bound.
	maxRedisWaitTimeout = 4 * time.Second
)

// Load reads the configuration from the process environment.
func Load(ctx context.Context) (Config, error) {
	return LoadFrom(ctx, os.LookupEnv)
}

// LoadFrom reads the configuration through lookup (os.LookupEnv in production), so tests need
// not touch the process environment.
func LoadFrom(ctx context.Context, lookup func(string) (string, bool)) (Config, error) {
	var c Config
	files := fileLookuper{lookup: lookup}
	if err := files.check(); err != nil {
		return c, err
	}
	err := envconfig.ProcessWith(ctx, &envconfig.Config{
		Target:   &c,
		Lookuper: envconfig.PrefixLookuper(Prefix, files),
	})
	if err != nil {
		return c, envError(err)
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	return c, nil
}

// envError rewrites go-envconfig's "FieldName: problem" into "BRIDGE_VAR: problem", the name an
// operator set. Values are not repeated: they may be secrets.
func envError(err error) error {
	msg := err.Error()
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if rest, ok := strings.CutPrefix(msg, f.Name+": "); ok {
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			return fmt.Errorf("%s%s: invalid value (%s)", Prefix, name, problem(rest))
		}
	}
	return fmt.Errorf("configuration: %s", problem(msg))
}

// problem keeps the kind of parse failure and drops the quoted input value.
func problem(s string) string {
	switch {
	case strings.Contains(s, "ParseInt"), strings.Contains(s, "ParseUint"):
		return "want a whole number"
	case strings.Contains(s, "ParseBool"):
		return "want true or false"
	case strings.Contains(s, "duration"):
		return "want a duration such as 15s, 5m or 720h"
	}
	if i := strings.Index(s, "\""); i >= 0 {
		s = strings.TrimRight(s[:i], " :")
	}
	return strings.ReplaceAll(s, "\n", " ")
}

type fileLookuper struct{ lookup func(string) (string, bool) }

func (f fileLookuper) Lookup(key string) (string, bool) {
	if v, ok := f.lookup(key); ok {
		return v, true
	}
	for _, s := range secretVars {
		if key == Prefix+s {
			if path, ok := f.lookup(key + "_FILE"); ok && path != "" {
				b, err := os.ReadFile(path)
				if err != nil {
					// check() already proved the file readable; a race leaves the value unset.
					return "", false
				}
				return strings.TrimRight(string(b), "\r\n"), true
			}
		}
	}
	return "", false
}

// check reports *_FILE problems up front, with the variable named, instead of a silent empty value.
func (f fileLookuper) check() error {
	for _, s := range secretVars {
		name := Prefix + s
		path, ok := f.lookup(name + "_FILE")
		if !ok || path == "" {
			continue
		}
		if v, set := f.lookup(name); set && v != "" {
			return fmt.Errorf("%s_FILE: set together with %s; use one", name, name)
		}
		if _, err := os.ReadFile(path); err != nil {
			return fmt.Errorf("%s_FILE: %w", name, err)
		}
	}
	return nil
}

func bad(name, format string, a ...any) error {
	return fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, a...))
}

func (c *Config) validate() error {
	for _, u := range []struct{ name, val string }{{"REDIS_URL", c.RedisURL}, {"EVENTBUS_REDIS_URL", c.EventBusRedisURL}} {
		if u.val == "" {
			continue
		}
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "redis" && p.Scheme != "rediss") || p.Host == "" {
			// The value may hold a password: never echo it.
			return bad(u.name, "want redis://host:port[/db] or rediss://…")
		}
	}
	if c.BadgrURL != "" {
		p, err := url.Parse(c.BadgrURL)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return bad("BADGR_URL", "want an absolute http(s) URL such as https://api.badgr.io")
		}
		c.BadgrURL = strings.TrimRight(c.BadgrURL, "/")
	}
	if (c.RedisSentinelMaster == "") != (len(c.RedisSentinelAddrs) == 0) {
		return bad("REDIS_SENTINEL_ADDRS", "set together with BRIDGE_REDIS_SENTINEL_MASTER")
	}
	positive := []struct {
		name string
		d    time.Duration
	}{{"BADGR_TIMEOUT", c.BadgrTimeout}, {"SHUTDOWN_GRACE", c.ShutdownGrace}, {"SETTLE", c.Settle}, {"EVENT_RETENTION", c.EventRetention}}
	for _, p := range positive {
		if p.d <= 0 {
			return bad(p.name, "must be a positive duration, got %s", p.d)
		}
	}
	if c.ShutdownGrace <= c.BadgrTimeout {
		return bad("SHUTDOWN_GRACE", "%s must exceed BRIDGE_BADGR_TIMEOUT (%s) so an in-flight call can finish", c.ShutdownGrace, c.BadgrTimeout)
	}
	if c.Settle < c.BadgrTimeout {
		return bad("SETTLE", "%s must be at least BRIDGE_BADGR_TIMEOUT (%s)", c.Settle, c.BadgrTimeout)
	}
	if c.RedisMinReplicas < 0 || c.RedisMinReplicas > maxMinReplicas {
		return bad("REDIS_MIN_REPLICAS", "must be between 0 and %d, got %d", maxMinReplicas, c.RedisMinReplicas)
	}
	if c.RedisWaitTimeout < time.Millisecond || c.RedisWaitTimeout > maxRedisWaitTimeout {
		// WAIT counts whole milliseconds (0 would mean forever); a webhook's intake is bounded at
		// 10s, and a wait for both fsync and replicas can take twice this.
		return bad("REDIS_WAIT_TIMEOUT", "must be between 1ms and %s, got %s", maxRedisWaitTimeout, c.RedisWaitTimeout)
	}
	if err := c.CheckMode(""); err != nil {
		return err
	}
	if c.BadgrRateLimit < 0 {
		return bad("BADGR_RATE_LIMIT", "must be 0 (unlimited) or more, got %d", c.BadgrRateLimit)
	}
	if c.WorkerConcurrency < 1 || c.WorkerConcurrency > 1000 {
		return bad("WORKER_CONCURRENCY", "must be between 1 and 1000, got %d", c.WorkerConcurrency)
	}
	if c.MaxRetry < 0 || c.MaxRetry > 100 {
		return bad("MAX_RETRY", "must be between 0 and 100, got %d", c.MaxRetry)
	}
	for i, s := range c.WebhookSecrets {
		if err := checkSecret(s); err != nil {
			return bad("WEBHOOK_SECRETS", "entry %d: %v", i+1, err)
		}
	}
	for _, l := range []struct {
		name string
		toks []string
	}{{"WEBHOOK_TOKENS", c.WebhookTokens}, {"WEBHOOK_QUERY_TOKENS", c.WebhookQueryTokens}} {
		for i, t := range l.toks {
			if len(t) < 32 {
				return bad(l.name, "entry %d is %d characters; tokens need at least 32", i+1, len(t))
			}
		}
	}
	for _, q := range c.WebhookQueryTokens {
		for _, b := range c.WebhookTokens {
			if q == b {
				return bad("WEBHOOK_QUERY_TOKENS", "a bearer token from BRIDGE_WEBHOOK_TOKENS is also listed; query tokens must be separate")
			}
		}
	}
	if c.WebhookMaxInflight < 1 || c.WebhookMaxInflight > 100000 {
		return bad("WEBHOOK_MAX_INFLIGHT", "must be between 1 and 100000, got %d", c.WebhookMaxInflight)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 32 {
		return bad("ADMIN_TOKEN", "is %d characters; it needs at least 32", len(c.AdminToken))
	}
	if c.LearnerRecord != "mapped" && c.LearnerRecord != "all" {
		return bad("LEARNER_RECORD", "want mapped or all, got %q", c.LearnerRecord)
	}
	if c.EventBusStart != "newest" && c.EventBusStart != "oldest" {
		return bad("EVENTBUS_START", "want newest or oldest, got %q", c.EventBusStart)
	}
	if c.EventBusGroup == "" {
		return bad("EVENTBUS_GROUP", "must not be empty")
	}
	if c.EventBusBadgeStream != "" {
		if c.EventBusRedisURL == "" {
			return bad("EVENTBUS_BADGE_STREAM", "needs BRIDGE_EVENTBUS_REDIS_URL: the announcements go to the event-bus Redis")
		}
		if strings.ContainsAny(c.EventBusBadgeStream, " \t{}") {
			return bad("EVENTBUS_BADGE_STREAM", "invalid stream name %q", c.EventBusBadgeStream)
		}
	}
	for _, s := range c.EventBusStreams {
		if s == "" || strings.ContainsAny(s, " \t{}") {
			return bad("EVENTBUS_STREAMS", "invalid stream name %q", s)
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return bad("LOG_LEVEL", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return bad("LOG_FORMAT", "want json or text, got %q", c.LogFormat)
	}
	return nil
}

// checkSecret validates a Standard Webhooks secret: whsec_ + base64 of 24 to 64 random bytes.
func checkSecret(s string) error {
	raw, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return fmt.Errorf("want whsec_<base64>")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return fmt.Errorf("the part after whsec_ is not base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return fmt.Errorf("decodes to %d bytes; want 24 to 64", len(key))
	}
	return nil
}

// DevMode tells whether cmd would run in development mode: explicitly, or `run` with neither a
// queue Redis nor an event bus configured (contract section 2).
func (c Config) DevMode(command string) bool {
	if c.Dev {
		return true
	}
	return command == "run" && c.RedisURL == "" && c.RedisSentinelMaster == "" &&
		len(c.RedisClusterAddrs) == 0 && c.EventBusRedisURL == ""
}

// CheckMode reports settings that cannot work in the mode command runs in: the embedded Redis
// of development mode has no replicas to wait for. An empty command checks BRIDGE_DEV alone.
func (c Config) CheckMode(command string) error {
	if c.RedisMinReplicas > 0 && c.DevMode(command) && !c.queueConfigured() {
		return bad("REDIS_MIN_REPLICAS", "is %d, but development mode's embedded Redis has no replicas; unset it, or set BRIDGE_REDIS_URL to a Redis that has them", c.RedisMinReplicas)
	}
	return nil
}

func (c Config) queueConfigured() bool {
	return c.RedisURL != "" || c.RedisSentinelMaster != "" || len(c.RedisClusterAddrs) > 0
}

// RequireQueue reports the missing queue Redis outside development mode.
func (c Config) RequireQueue() error {
	if !c.queueConfigured() {
		return bad("REDIS_URL", "not set; the queue Redis is required outside development mode (set BRIDGE_DEV=true to try the bridge without it)")
	}
	return nil
}

// RequireBadgeHost reports the missing badge host outside development mode.
func (c Config) RequireBadgeHost() error {
	if c.BadgrURL == "" {
		return bad("BADGR_URL", "not set; the badge host is required by run, work and backfill outside development mode")
	}
	return nil
}
