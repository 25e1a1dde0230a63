package app

import (
	"context"
	"errors"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/announce"
)

// openAnnouncer prepares the publisher of contract 9.4 where jobs run (run, work) and
// BRIDGE_EVENTBUS_BADGE_STREAM is set: the reconcile records its awards and revocations in the
// outbox either way, and this moves them to the bus. It has a client of its own to the event-bus
// Redis, so that its writes never queue behind the consumer's blocking reads.
func (a *App) openAnnouncer(p *parts) error {
	cfg := a.cfg
	if cfg.EventBusBadgeStream == "" {
		return nil
	}
	opt, err := redis.ParseURL(cfg.EventBusRedisURL)
	if err != nil {
		return errors.New("BRIDGE_EVENTBUS_REDIS_URL: not a valid Redis URL")
	}
	bus := redis.NewClient(opt)
	p.closers = append(p.closers, func() { _ = bus.Close() })
	hostname, _ := os.Hostname()
	p.announcer = announce.New(announce.Config{
		Ledger: p.ledger, Bus: bus, Stream: cfg.EventBusBadgeStream, Host: p.host,
		Meta: announce.Meta{SourceHost: hostname, SourceLib: announce.SourceLib(a.Version)}, Log: a.log.With("component", "announce"),
		Metrics: announce.NewMetrics(p.registry),
	})
	return nil
}

// runAnnouncer runs the publisher until ctx ends; the channel closes when it has stopped.
// Stopping loses nothing: what it has not published stays in the outbox for the next process.
func (a *App) runAnnouncer(ctx context.Context, p *parts) <-chan struct{} {
	done := make(chan struct{})
	if p.announcer == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := p.announcer.Run(ctx); err != nil {
			a.log.Error("announcement publisher stopped", "err", err)
		}
	}()
	return done
}
