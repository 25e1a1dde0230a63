// Package announce publishes the bridge's own awards and revocations on the Open edX event bus
// (contract 9.4): it moves the announcements the reconcile recorded in the ledger's outbox to a
// stream of the event-bus Redis as org.openedx.learning.badge.awarded.v1 / .revoked.v1, in the
// producer's wire format, and only then removes them from the outbox: at least once, with event
// ids that stay the same when an entry is sent again. It decides nothing about badges.
package announce

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/backoff"
	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/ledger"
)

// BusMaxLen is the MAXLEN ~ of every XADD: what openedx/event-bus-redis keeps by default, so the
// bridge's entries do not make the stream longer than its other producers expect.
const BusMaxLen = 10_000

// Config configures a Publisher.
type Config struct {
	Ledger  *ledger.Ledger        // the outbox and the learners' contact data
	Bus     redis.UniversalClient // the event-bus Redis
	Stream  string                // BRIDGE_EVENTBUS_BADGE_STREAM
	Host    badgehost.Host        // describes badge classes for the template
	Meta    Meta
	Log     *slog.Logger
	Metrics *Metrics

	Batch int64         // entries per cycle; default 100
	Poll  time.Duration // wait when the outbox is empty; default 500 ms ("within a few seconds")
	Lease time.Duration // the publisher lease among worker replicas; default 1 min
}

// Publisher moves the outbox to the bus. Safe to run in every worker process: a lease in the
// bridge's Redis lets one publish at a time.
type Publisher struct {
	cfg    Config
	holder string // this process's lease token

	mu      sync.Mutex
	classes map[string]badgehost.BadgeClass // per process: a badge class is fetched once

	// beforeRemove, when set (tests), runs between the XADD and the removal from the outbox; an
	// error stands for a crash there.
	beforeRemove func() error
}

// retryPolicy spaces cycles while the bus, the bridge's Redis or the host fails: 500 ms doubling
// to 30 s, ±25 %.
var retryPolicy = backoff.Policy{Base: 500 * time.Millisecond, Max: 30 * time.Second, Low: 0.75, High: 1.25}

// New returns a Publisher.
func New(cfg Config) *Publisher {
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.Meta.Source == "" {
		cfg.Meta.Source = "badge-bridge"
	}
	if cfg.Meta.SourceLib == "" {
		cfg.Meta.SourceLib = DefaultSourceLib()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return &Publisher{cfg: cfg, holder: hex.EncodeToString(b[:]), classes: map[string]badgehost.BadgeClass{}}
}

// Run publishes until ctx ends, backing off while something it needs is down; it returns nil
// then. Entries stay in the outbox while the bus is unreachable and go out once it is back.
func (p *Publisher) Run(ctx context.Context) error {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.cfg.Ledger.ReleaseOutbox(rctx, p.holder); err != nil {
			p.cfg.Log.Warn("release the announcement lease failed; it expires by itself", "err", err)
		}
	}()
	failures := 0
	var downSince time.Time
	for {
		n, err := p.Cycle(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := p.cfg.Poll
		switch {
		case err != nil:
			failures++
			wait = retryPolicy.Delay(failures)
			if downSince.IsZero() {
				downSince = time.Now()
				// One line when an outage starts, not one per retry.
				p.cfg.Log.Warn("announcing on the event bus failing; announcements wait in the outbox", "stream", p.cfg.Stream, "err", err)
			}
		case n == int(p.cfg.Batch):
			wait = 0 // more may be waiting
		}
		if err == nil {
			failures = 0
			if !downSince.IsZero() {
				p.cfg.Log.Info("announcing on the event bus working again", "down_for", time.Since(downSince).Round(time.Millisecond).String())
				downSince = time.Time{}
			}
		}
		p.measure(ctx)
		if wait > 0 && !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// Cycle publishes one batch if this process holds the lease, and reports how many entries it
// took from the outbox (published or dropped as unreadable).
func (p *Publisher) Cycle(ctx context.Context) (int, error) {
	ok, err := p.cfg.Ledger.ClaimOutbox(ctx, p.holder, p.cfg.Lease)
	if err != nil {
		p.cfg.Metrics.failed("ledger")
		return 0, err
	}
	if !ok {
		return 0, nil // another replica publishes
	}
	entries, err := p.cfg.Ledger.ReadOutbox(ctx, p.cfg.Batch)
	if err != nil || len(entries) == 0 {
		if err != nil {
			p.cfg.Metrics.failed("ledger")
		}
		return 0, err
	}
	var ids, bad []string
	var kinds []string
	values := make([][]any, 0, len(entries))
	for _, e := range entries {
		if e.Err != nil {
			// Never let one unreadable entry hold the others back.
			p.cfg.Log.Error("unreadable outbox entry dropped", "entry_id", e.ID, "err", e.Err)
			bad = append(bad, e.ID)
			continue
		}
		v, err := p.entry(ctx, e.Announcement)
		if err != nil {
			if len(values) == 0 {
				return 0, err
			}
			break // publish what is ready; the rest waits for the next cycle
		}
		ids, kinds = append(ids, e.ID), append(kinds, e.Kind)
		values = append(values, v)
	}
	if len(values) > 0 {
		if err := p.xadd(ctx, values); err != nil {
			p.cfg.Metrics.failed("bus")
			return 0, fmt.Errorf("announce on %s: %w", p.cfg.Stream, err)
		}
		for _, k := range kinds {
			p.cfg.Metrics.published(k)
		}
	}
	if p.beforeRemove != nil {
		if err := p.beforeRemove(); err != nil {
			return 0, err
		}
	}
	// Removed only now: a crash before this line sends the same entries, with the same ids, again.
	if err := p.cfg.Ledger.RemoveOutbox(ctx, append(ids, bad...)...); err != nil {
		p.cfg.Metrics.failed("ledger")
		return 0, err
	}
	p.cfg.Metrics.dropped(len(bad))
	return len(ids) + len(bad), nil
}

// xadd writes the entries in one round trip, in outbox order.
func (p *Publisher) xadd(ctx context.Context, values [][]any) error {
	cmds, err := p.cfg.Bus.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, v := range values {
			pl.XAdd(ctx, &redis.XAddArgs{Stream: p.cfg.Stream, MaxLen: BusMaxLen, Approx: true, Values: v})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return c.Err()
		}
	}
	return nil
}

// entry builds the bus entry of one announcement with the learner's current contact data and
// the host's description of the badge class.
func (p *Publisher) entry(ctx context.Context, a ledger.Announcement) ([]any, error) {
	who, err := p.cfg.Ledger.AnnouncedLearner(ctx, a.Row.UserID)
	if err != nil {
		p.cfg.Metrics.failed("ledger")
		return nil, err
	}
	class, err := p.badgeClass(ctx, a.Row.BadgeClass)
	if err != nil {
		p.cfg.Metrics.failed("host")
		return nil, err
	}
	return Entry(a, who, class, p.cfg.Meta)
}

// badgeClass describes a badge class from the per-process cache or the host. A class the host
// says it does not have gives a zero description (and is not cached): the announcement still
// goes out, with the template's optional fields empty, rather than hold the outbox back forever.
func (p *Publisher) badgeClass(ctx context.Context, id string) (badgehost.BadgeClass, error) {
	p.mu.Lock()
	c, ok := p.classes[id]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := p.cfg.Host.BadgeClass(ctx, id)
	var permanent *badgehost.PermanentError
	switch {
	case errors.As(err, &permanent):
		p.cfg.Log.Warn("badge class unknown to the host; announcing without its description", "badge_class", id, "err", err)
		return badgehost.BadgeClass{}, nil
	case err != nil:
		return badgehost.BadgeClass{}, fmt.Errorf("describe badge class %s: %w", id, err)
	}
	p.mu.Lock()
	p.classes[id] = c
	p.mu.Unlock()
	return c, nil
}

// measure updates the outbox gauges; a failure only leaves them as they were.
func (p *Publisher) measure(ctx context.Context) {
	if p.cfg.Metrics == nil {
		return
	}
	s, err := p.cfg.Ledger.OutboxStatus(ctx)
	if err != nil {
		return
	}
	p.cfg.Metrics.outbox(s)
}
