// Package durable holds back the bridge's answers until the Redis writes they rest on would
// survive the primary: acknowledged by BRIDGE_REDIS_MIN_REPLICAS replicas (WAIT), so a Sentinel
// failover keeps them, and on Redis ≥ 7.2 with AOF also fsynced to the primary's AOF
// (WAITAOF 1 0), so a crash keeps them (contract section 5).
//
// WAIT and WAITAOF only cover the writes of the connection they run on, while the intake writes
// over several pooled connections. Redis replicates and appends in one ordered stream, so a
// small marker write on one dedicated connection, followed on that same connection by the
// waits, is acknowledged only once every write made before it is: after all of an event's
// writes have completed, one marker covers them all.
package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotConfirmed marks every failed wait: the write reached the primary but was not confirmed
// durable in time. The caller must not answer success (503, entry left pending); resending is
// safe, and the resend waits again. Nothing about the event itself is wrong, so it must never
// count against the event (the event-bus consumer treats it like an unreachable Redis).
var ErrNotConfirmed = errors.New("the write was not confirmed durable by the queue Redis")

const (
	// redetectEvery bounds how long a detected setting is trusted: a Sentinel failover can bring
	// a primary of another version or with AOF off.
	redetectEvery = time.Minute
	// redetectAfterFailure is how soon a failed wait or detection is followed by a new
	// detection: soon, since a failover is the likely cause, but not on every request of an
	// outage.
	redetectAfterFailure = 5 * time.Second
	// markerTTL keeps the marker key from outliving its use; every wait rewrites it.
	markerTTL = time.Minute
	// readSlack is what a pipelined wait needs on top of the wait's own timeout before the
	// client's read deadline: WAIT answers at its timeout, plus a network round trip.
	readSlack = time.Second
	// DefaultTimeout is BRIDGE_REDIS_WAIT_TIMEOUT's default.
	DefaultTimeout = time.Second
)

// Options configure a Gate; they come from BRIDGE_REDIS_MIN_REPLICAS and
// BRIDGE_REDIS_WAIT_TIMEOUT.
type Options struct {
	// MinReplicas is how many replicas must acknowledge a write (WAIT); 0: none.
	MinReplicas int
	// Timeout bounds each wait; 0 means DefaultTimeout.
	Timeout time.Duration
	// Prefix is the key prefix of the marker key (the ledger's, "bb:").
	Prefix string
	Log    *slog.Logger
}

// setting is what a detection found on the primary.
type setting struct {
	known    bool // a detection has succeeded
	version  string
	aof      bool
	fsync    bool // WAITAOF applies: version ≥ 7.2 and AOF on
	replicas int  // connected replicas at detection; -1 unknown
}

// Gate waits, after an event's writes, until they are durable as configured and detected.
// A nil *Gate never waits. It is safe for concurrent use.
type Gate struct {
	client    *redis.Client // nil for a client that is not one connection pool (use Open)
	marker    string        // the marker key: opt.Prefix+"durable", or one in this primary's slots on a Cluster
	opt       Options
	pipelined bool // the marker and the waits fit in one round trip under the client's read deadline
	log       *slog.Logger
	now       func() time.Time

	mu         sync.Mutex
	set        setting
	detectErr  error     // the last detection's error, nil once one succeeds
	detectedAt time.Time // the last detection, successful or not
	retrySoon  bool      // a wait or detection failed: detect again after redetectAfterFailure
	detecting  bool      // one caller detects; the others go on with the current setting

	// Waits are grouped: a caller joins the round not yet sent, and one round is in flight at a
	// time, so concurrent events share one marker and one WAIT on one connection instead of
	// each holding a pooled connection for up to the timeout when replicas are away.
	rmu     sync.Mutex
	pending *round // accepting callers; sent after the round in flight
	sending bool   // a goroutine is sending rounds
}

// round is one marker and its waits, shared by every caller that joined it before it was sent.
// Its marker is written after each caller's writes completed, so its acknowledgement covers them.
type round struct {
	done chan struct{}
	err  error
}

// New prepares a gate for the queue Redis rdb. It sends nothing: call Detect.
func New(rdb redis.UniversalClient, o Options) *Gate {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	// WAIT takes milliseconds and 0 means "forever": never let a sub-millisecond timeout become 0.
	o.Timeout = max(o.Timeout, time.Millisecond)
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gate{opt: o, marker: o.Prefix + "durable", log: log.With("component", "durable"), now: time.Now}
	g.set.replicas = -1
	// A plain URL and Sentinel's failover client are both *redis.Client; a dedicated connection
	// of one is what WAIT needs.
	if c, ok := rdb.(*redis.Client); ok {
		g.client = c
		rt := c.Options().ReadTimeout
		g.pipelined = rt <= 0 || rt >= o.Timeout+readSlack
	} else {
		// A Redis Cluster has a Gate per primary (Open, NewCluster); any other client cannot
		// give the one connection a wait needs.
		lvl := slog.LevelInfo
		if o.MinReplicas > 0 {
			lvl = slog.LevelWarn
		}
		g.log.Log(context.Background(), lvl, "waiting for replicas or fsync is not supported with this Redis client: answers do not wait",
			"client", fmt.Sprintf("%T", rdb), "min_replicas", o.MinReplicas)
	}
	return g
}

// Detect reads the primary's version and AOF setting (and its connected replicas, for
// `check --remote`), which decide whether WAITAOF applies. On failure the previous setting
// stays and the next wait tries again soon.
func (g *Gate) Detect(ctx context.Context) error {
	if g == nil || g.client == nil {
		return nil
	}
	s, err := detect(ctx, g.client)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.detectedAt = g.now()
	if err != nil {
		g.detectErr, g.retrySoon = err, true
		return err
	}
	prev := g.set
	g.set, g.detectErr, g.retrySoon = s, nil, false
	if !prev.known || prev.fsync != s.fsync || prev.version != s.version || prev.aof != s.aof {
		g.log.Info("queue Redis durability detected", "redis_version", s.version, "aof", s.aof,
			"applies", g.describe(s), "min_replicas", g.opt.MinReplicas)
	}
	// Said once when it starts, not every minute while it lasts: the failed waits say the rest.
	if short(s, g.opt.MinReplicas) && (!prev.known || !short(prev, g.opt.MinReplicas)) {
		g.log.Warn("fewer replicas connected than BRIDGE_REDIS_MIN_REPLICAS: events are answered 503 (event-bus entries stay pending) until enough are",
			"connected_replicas", s.replicas, "min_replicas", g.opt.MinReplicas)
	}
	return nil
}

// detect reads INFO server, persistence and replication in one round trip. Separate sections,
// not one INFO with several: Redis 6.2 takes a single section.
func detect(ctx context.Context, c *redis.Client) (setting, error) {
	var server, persistence, replication *redis.StringCmd
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		server = p.Info(ctx, "server")
		persistence = p.Info(ctx, "persistence")
		replication = p.Info(ctx, "replication")
		return nil
	})
	if err := server.Err(); err != nil {
		return setting{}, fmt.Errorf("detect queue Redis durability: INFO server: %w", err)
	}
	if err := persistence.Err(); err != nil {
		return setting{}, fmt.Errorf("detect queue Redis durability: INFO persistence: %w", err)
	}
	s := setting{known: true, replicas: -1}
	s.version = ParseInfo(server.Val())["redis_version"]
	s.aof = ParseInfo(persistence.Val())["aof_enabled"] == "1"
	s.fsync = s.aof && VersionAtLeast(s.version, 7, 2)
	// Replication is only reported (check --remote); a server that refuses it still waits.
	if replication.Err() == nil {
		r := ParseInfo(replication.Val())
		if n, err := strconv.Atoi(r["connected_slaves"]); err == nil {
			s.replicas = n
		}
	}
	return s, nil
}

// short says the primary had fewer replicas connected than n at detection.
func short(s setting, n int) bool { return s.known && s.replicas >= 0 && s.replicas < n }

// Wait returns once every write made before it (on any connection) is acknowledged by
// MinReplicas replicas and, where WAITAOF applies, fsynced to the primary's AOF. It sends
// nothing when neither applies. A failed wait wraps ErrNotConfirmed.
func (g *Gate) Wait(ctx context.Context) error {
	if g == nil || g.client == nil {
		return nil
	}
	fsync := g.current(ctx)
	if g.opt.MinReplicas == 0 && !fsync {
		return nil
	}
	g.rmu.Lock()
	if g.pending == nil {
		g.pending = &round{done: make(chan struct{})}
	}
	r := g.pending
	if !g.sending {
		g.sending = true
		go g.sendRounds(fsync)
	}
	g.rmu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotConfirmed, ctx.Err())
	}
	if r.err != nil {
		g.mu.Lock()
		g.retrySoon = true
		g.mu.Unlock()
	}
	return r.err
}

// sendRounds sends the pending round, and the next one that filled meanwhile, until none is
// left. A round's own deadline bounds it, not any one caller's context.
func (g *Gate) sendRounds(fsync bool) {
	for {
		g.rmu.Lock()
		r := g.pending
		g.pending = nil
		if r == nil {
			g.sending = false
			g.rmu.Unlock()
			return
		}
		g.rmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*g.opt.Timeout+readSlack)
		r.err = g.wait(ctx, fsync)
		cancel()
		close(r.done)
		fsync = g.current(context.Background())
	}
}

// current says whether WAITAOF applies, detecting again first when the setting is due: once a
// minute, or soon after a failure. One caller detects; the others use the setting they find.
func (g *Gate) current(ctx context.Context) bool {
	g.mu.Lock()
	age := g.now().Sub(g.detectedAt)
	due := !g.detecting && (age >= redetectEvery || (g.retrySoon && age >= redetectAfterFailure))
	if !due {
		fsync := g.set.fsync
		g.mu.Unlock()
		return fsync
	}
	g.detecting = true
	g.mu.Unlock()
	if err := g.Detect(ctx); err != nil {
		g.log.Warn("could not detect the queue Redis durability settings; keeping the previous ones", "err", err)
	}
	g.mu.Lock()
	g.detecting = false
	fsync := g.set.fsync
	g.mu.Unlock()
	return fsync
}

// wait writes the marker and waits, on one dedicated connection: WAIT and WAITAOF count the
// writes of their own connection only.
func (g *Gate) wait(ctx context.Context, fsync bool) error {
	n, timeout := g.opt.MinReplicas, g.opt.Timeout
	steps := []func(waitCmdable) redis.Cmder{func(c waitCmdable) redis.Cmder {
		return c.Set(ctx, g.marker, g.now().UnixMicro(), markerTTL)
	}}
	if fsync {
		steps = append(steps, func(c waitCmdable) redis.Cmder { return c.WaitAOF(ctx, 1, 0, timeout) })
	}
	if n > 0 {
		steps = append(steps, func(c waitCmdable) redis.Cmder { return c.Wait(ctx, n, timeout) })
	}
	conn := g.client.Conn()
	defer conn.Close()
	if !g.pipelined {
		// The client's read deadline is shorter than the wait: one command at a time (go-redis
		// gives WAIT and WAITAOF a read deadline of their own), stopping at the first failure,
		// since a wait after a failed marker would cover nothing.
		for _, step := range steps {
			if err := g.check(step(conn)); err != nil {
				return err
			}
		}
		return nil
	}
	cmds := make([]redis.Cmder, 0, len(steps))
	// One round trip; each reply is checked below, in order.
	_, _ = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		w, ok := p.(waitCmdable)
		if !ok {
			return errors.New("go-redis pipeline without WAIT")
		}
		for _, step := range steps {
			cmds = append(cmds, step(w))
		}
		return nil
	})
	if len(cmds) < len(steps) {
		return fmt.Errorf("%w: go-redis pipeline without WAIT", ErrNotConfirmed)
	}
	for _, c := range cmds {
		if err := g.check(c); err != nil {
			return err
		}
	}
	return nil
}

// waitCmdable is what a wait sends: go-redis has WAIT and WAITAOF on its connections and
// pipelines, but not in its Cmdable interface.
type waitCmdable interface {
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	Wait(ctx context.Context, numReplicas int, timeout time.Duration) *redis.IntCmd
	WaitAOF(ctx context.Context, numLocal, numReplicas int, timeout time.Duration) *redis.IntSliceCmd
}

// Both places a wait is sent from.
var (
	_ waitCmdable = (*redis.Conn)(nil)
	_ waitCmdable = (*redis.Pipeline)(nil)
)

// check reads the reply of one command of a wait.
func (g *Gate) check(c redis.Cmder) error {
	timeout := g.opt.Timeout
	switch c := c.(type) {
	case *redis.StatusCmd:
		if err := c.Err(); err != nil {
			return fmt.Errorf("%w: marker write: %w", ErrNotConfirmed, err)
		}
	case *redis.IntSliceCmd:
		v, err := c.Result()
		switch {
		case err != nil:
			return fmt.Errorf("%w: WAITAOF: %w", ErrNotConfirmed, err)
		case len(v) < 1 || v[0] < 1:
			return fmt.Errorf("%w: the primary did not fsync its AOF within %s", ErrNotConfirmed, timeout)
		}
	case *redis.IntCmd:
		got, err := c.Result()
		switch {
		case err != nil:
			return fmt.Errorf("%w: WAIT: %w", ErrNotConfirmed, err)
		case got < int64(g.opt.MinReplicas):
			return fmt.Errorf("%w: %d of %d replicas acknowledged the write within %s", ErrNotConfirmed, got, g.opt.MinReplicas, timeout)
		}
	}
	return nil
}
