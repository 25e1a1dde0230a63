package testutil

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartReplica starts a redis-server replicating primary and waits until it acknowledges the
// primary's writes.
func StartReplica(t testing.TB, primary *RedisServer) *RedisServer {
	t.Helper()
	_, port, err := net.SplitHostPort(primary.Addr)
	if err != nil {
		t.Fatal(err)
	}
	replica := StartRedis(t, "--replicaof", "127.0.0.1", port)
	WaitReplicas(t, primary.Client(t), 1)
	return replica
}

// WaitReplicas waits until n replicas acknowledge the primary's writes.
func WaitReplicas(t testing.TB, rdb *redis.Client, n int) {
	t.Helper()
	// Online is not enough: right after its sync a replica may not acknowledge yet. Wait until
	// a write is acknowledged (WAIT counts the writes of its own connection).
	ctx := context.Background()
	conn := rdb.Conn()
	defer conn.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn.Set(ctx, "test:replicated", time.Now().UnixNano(), 0)
		if got, err := conn.Wait(ctx, n, 200*time.Millisecond).Result(); err == nil && got >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			info, _ := rdb.Info(ctx, "replication").Result()
			t.Fatalf("no %d replica(s) acknowledging:\n%s", n, info)
		}
	}
}
