// Package eventbus consumes the Open edX Redis event bus (openedx/event-bus-redis, contract 4.2)
// with a consumer group of its own and hands each certificate or passing-status event to the
// intake. Unlike the reference consumer it never moves the group's position and acknowledges an
// entry only once the intake has recorded it, so a restart, a crash or a Redis outage loses
// nothing the stream still holds.
package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/backoff"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
)

// Via is what the consumer passes to Handler.Handle as the event's origin.
const Via = "eventbus"

// Start positions of a new consumer group (BRIDGE_EVENTBUS_START).
const (
	StartNewest = "newest"
	StartOldest = "oldest"
)

// Defaults of the Config fields left zero.
const (
	DefaultBlock         = 2 * time.Second
	DefaultCount         = 32
	DefaultClaimIdle     = 60 * time.Second
	DefaultClaimInterval = 15 * time.Second
	DefaultGoneAfter     = time.Hour
	// DefaultLanes is how many entries of a batch are handled at once. The intake spends an
	// entry mostly waiting on ~5 Redis round trips, so a few lanes per CPU keep the CPUs busy;
	// more would mostly queue for the bridge's Redis connection pool (go-redis: 10 per CPU),
	// which the issuance workers share, and fail more entries at once when Redis goes away.
	DefaultLanes = 8
	// DefaultDeadMaxLen caps each dead-letter stream: a dead letter is at most ~7 KiB (4 KiB of
	// event_data, 1 KiB of reason, the metadata fields at 256 bytes each), so a full stream
	// holds at most ~7 MB, usually far less.
	DefaultDeadMaxLen = 1000
)

// Handler records one event; *intake.Intake implements it. An error means the event was not
// recorded: the entry stays pending and is offered again.
type Handler interface {
	Handle(ctx context.Context, ev edx.Event, via string) (intake.Result, error)
}

// Config says what to read and how.
type Config struct {
	Streams  []string // BRIDGE_EVENTBUS_STREAMS
	Group    string   // BRIDGE_EVENTBUS_GROUP
	Start    string   // StartNewest or StartOldest: where a NEW group starts; an existing group is never moved
	Consumer string   // consumer name, stable per pod; default POD_NAME, HOSTNAME or the host name (defaultConsumerName)
	Block    time.Duration
	Count    int // entries per stream and read
	// Lanes is how many entries of a batch are handled at once; one learner's entries are
	// always handled one after the other, in stream order.
	Lanes int

	// ClaimIdle is how long an entry may stay pending with any consumer before another one
	// takes it over with XAUTOCLAIM; ClaimInterval is how often that is tried (and the trimmed
	// entries counted), once at start too.
	ClaimIdle     time.Duration
	ClaimInterval time.Duration

	// GoneAfter is how long a consumer of the group may go without reading, with nothing
	// pending, before it is removed from the group (a replica that went away for good).
	GoneAfter time.Duration

	DeadMaxLen int64 // cap of each <stream>.dead dead-letter stream
}

func (c Config) withDefaults() Config {
	c.Streams = append([]string(nil), c.Streams...)
	if c.Start == "" {
		c.Start = StartNewest
	}
	if c.Consumer == "" {
		c.Consumer = defaultConsumerName()
	}
	if c.Block <= 0 {
		// Zero would mean BLOCK 0, which waits forever and never lets Run see its context end.
		c.Block = DefaultBlock
	}
	if c.Count <= 0 {
		c.Count = DefaultCount
	}
	if c.Lanes <= 0 {
		c.Lanes = DefaultLanes
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = DefaultClaimIdle
	}
	if c.ClaimInterval <= 0 {
		c.ClaimInterval = DefaultClaimInterval
	}
	if c.GoneAfter <= 0 {
		c.GoneAfter = DefaultGoneAfter
	}
	if c.DeadMaxLen <= 0 {
		c.DeadMaxLen = DefaultDeadMaxLen
	}
	return c
}

func (c Config) validate() error {
	if len(c.Streams) == 0 {
		return errors.New("eventbus: no streams configured")
	}
	seen := make(map[string]bool, len(c.Streams))
	for _, s := range c.Streams {
		if strings.TrimSpace(s) == "" {
			return errors.New("eventbus: empty stream name")
		}
		if seen[s] {
			// XREADGROUP would deliver the stream twice in one reply.
			return fmt.Errorf("eventbus: stream %q listed twice", s)
		}
		seen[s] = true
	}
	if c.Group == "" {
		return errors.New("eventbus: empty consumer group name")
	}
	if c.Start != StartNewest && c.Start != StartOldest {
		return fmt.Errorf("eventbus: start %q: want %s or %s", c.Start, StartNewest, StartOldest)
	}
	return nil
}

// Consumer reads the configured streams with one consumer group. Run it once per process;
// Status may be called concurrently.
type Consumer struct {
	bus     redis.UniversalClient // the Open edX event-bus Redis
	own     redis.UniversalClient // the bridge's Redis: dead letters, trimmed-entry bookkeeping
	handler Handler
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	decoder     func(map[string]string) (edx.Event, error) // decodeEntry; tests make it panic
	failScript  *redis.Script                              // countFailureLua
	pruneScript *redis.Script                              // pruneLua

	// Outage trackers, so each outage logs one warning and one recovery line. The lanes of a
	// batch share them.
	busDown    outage
	ownDown    outage
	intakeDown outage
}

// New makes a consumer. bus is the event-bus Redis, own the bridge's Redis; reg may be nil.
func New(bus, own redis.UniversalClient, h Handler, cfg Config, log *slog.Logger, reg prometheus.Registerer) *Consumer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Consumer{
		bus: bus, own: own, handler: h, cfg: cfg,
		log:        log.With("component", "eventbus", "group", cfg.Group, "consumer", cfg.Consumer),
		metrics:    newMetrics(reg),
		decoder:    decodeEntry,
		failScript: redis.NewScript(countFailureLua), pruneScript: redis.NewScript(pruneLua),
		busDown:    outage{what: "event bus Redis"},
		ownDown:    outage{what: "bridge Redis (event bus dead letters)"},
		intakeDown: outage{what: "event intake"},
	}
}

// runState is what Run carries from one cycle to the next; only Run's goroutine touches it.
type runState struct {
	groupsReady bool
	everReady   bool // the groups were ready once: a missing group now means it vanished
	// drain holds the streams whose own pending entries must be (re)read, with the id to
	// read after: at start, after a failure and after a claim. Missing = read new entries.
	drain           map[string]string
	nextMaintenance time.Time
	nextPrune       time.Time
	noPrune         map[string]bool // streams where removing gone consumers is denied
	failures        int             // consecutive failed cycles, for the backoff
	uncountable     map[string]bool
	// acks holds, per stream, the entries of the current batch that are finished: they are
	// acknowledged together, in one round trip, once every lane of the batch is done.
	acks map[string][]string
}

// Run consumes until ctx is done and then returns nil. It returns an error only for an
// invalid configuration: Redis and intake failures are retried with backoff, because the
// group's position and the unacknowledged entries wait in Redis.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.cfg.validate(); err != nil {
		return err
	}
	if c.bus == nil || c.own == nil || c.handler == nil {
		return errors.New("eventbus: bus client, own client and handler are required")
	}
	c.log.Info("event bus consumer started", "streams", c.cfg.Streams, "start", c.cfg.Start)
	st := &runState{drain: map[string]string{}, uncountable: map[string]bool{}, noPrune: map[string]bool{}}
	for {
		ok := c.cycle(ctx, st)
		if ctx.Err() != nil {
			c.log.Info("event bus consumer stopped")
			return nil
		}
		if ok {
			st.failures = 0
			continue
		}
		st.failures++
		if !backoff.Sleep(ctx, wait(st.failures)) {
			c.log.Info("event bus consumer stopped")
			return nil
		}
	}
}

// cycle does one step: make sure the groups exist, claim and count trimmed entries when due,
// then read and process one batch. It reports false when something failed and the loop must
// back off.
func (c *Consumer) cycle(ctx context.Context, st *runState) bool {
	if !st.groupsReady {
		if err := c.ensureGroups(ctx, st.everReady); err != nil {
			c.busFailed(ctx, st, "create consumer group", err)
			return false
		}
		c.busDown.recovered(c.log)
		st.groupsReady, st.everReady = true, true
		// Entries this consumer name left pending in an earlier run are finished first.
		for _, s := range c.cfg.Streams {
			st.drain[s] = "0"
		}
		st.nextMaintenance = time.Time{}
	}
	if !time.Now().Before(st.nextMaintenance) {
		if !c.maintain(ctx, st) {
			return false
		}
		st.nextMaintenance = time.Now().Add(c.cfg.ClaimInterval)
	}
	return c.readBatch(ctx, st)
}

// maintain claims idle entries of other consumers and counts entries trimmed before the group
// read them, for every stream, and now and then removes consumers that are gone.
func (c *Consumer) maintain(ctx context.Context, st *runState) bool {
	prune := !time.Now().Before(st.nextPrune)
	for _, s := range c.cfg.Streams {
		claimed, err := c.claim(ctx, s)
		if err != nil {
			c.busFailed(ctx, st, "claim pending entries", err, "stream", s)
			return false
		}
		if claimed {
			st.drain[s] = "0"
		}
		if err := c.countTrimmed(ctx, st, s); err != nil {
			c.busFailed(ctx, st, "inspect stream", err, "stream", s)
			return false
		}
		if prune {
			if err := c.pruneConsumers(ctx, st, s); err != nil {
				c.busFailed(ctx, st, "remove gone consumers", err, "stream", s)
				return false
			}
		}
	}
	if prune {
		// Gone consumers are removed within GoneAfter·1.25 of their last read.
		st.nextPrune = time.Now().Add(c.cfg.GoneAfter / 4)
	}
	return true
}

// busFailed sorts out a failed event-bus command: a missing group (the bus Redis lost its
// data) is recreated on the next cycle, anything else is an outage, logged once.
func (c *Consumer) busFailed(ctx context.Context, st *runState, op string, err error, attrs ...any) {
	if ctx.Err() != nil {
		return // shutting down: the error is the cancellation
	}
	if isNoGroup(err) {
		// The server answered, so the bus is reachable again.
		c.busDown.recovered(c.log)
		st.groupsReady = false
		c.log.Warn("consumer group missing on the event bus; recreating it", append(attrs, "op", op)...)
		return
	}
	c.busDown.failed(c.log, err, append(attrs, "op", op)...)
}
