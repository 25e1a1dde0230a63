package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/config"
)

// openRedis connects to the queue Redis described by cfg.
func openRedis(cfg config.Config) (redis.UniversalClient, error) {
	switch {
	case len(cfg.RedisClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.RedisClusterAddrs}), nil
	case cfg.RedisSentinelMaster != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: cfg.RedisSentinelMaster, SentinelAddrs: cfg.RedisSentinelAddrs,
		}), nil
	default:
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			// The URL may carry a password: name the variable, not the value.
			return nil, fmt.Errorf("BRIDGE_REDIS_URL: not a valid Redis URL")
		}
		// Enough connections for the workers, asynq's background loops and the web handlers.
		opt.PoolSize = max(opt.PoolSize, cfg.WorkerConcurrency+20)
		return redis.NewClient(opt), nil
	}
}

// connOpt describes the queue Redis for asynq components that open their own connection.
func connOpt(cfg config.Config) asynq.RedisConnOpt {
	switch {
	case len(cfg.RedisClusterAddrs) > 0:
		return asynq.RedisClusterClientOpt{Addrs: cfg.RedisClusterAddrs}
	case cfg.RedisSentinelMaster != "":
		return asynq.RedisFailoverClientOpt{MasterName: cfg.RedisSentinelMaster, SentinelAddrs: cfg.RedisSentinelAddrs}
	}
	opt, err := asynq.ParseRedisURI(cfg.RedisURL)
	if err != nil {
		return nil
	}
	return opt
}

// embeddedRedis starts the in-memory Redis of development mode. miniredis does not expire keys
// by the wall clock, so a ticker moves its clock along: lock leases and TTLs behave as in Redis.
func embeddedRedis(ctx context.Context, log *slog.Logger) (*miniredis.Miniredis, redis.UniversalClient, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, nil, fmt.Errorf("start embedded redis: %w", err)
	}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				mr.FastForward(250 * time.Millisecond)
			}
		}
	}()
	log.Debug("embedded redis started", "addr", mr.Addr())
	return mr, redis.NewClient(&redis.Options{Addr: mr.Addr(), PoolSize: 64}), nil
}
