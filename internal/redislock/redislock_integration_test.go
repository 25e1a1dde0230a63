package redislock

import (
	"context"
	"testing"

	"github.com/badgebridge/bridge/internal/testutil"
)

func TestReleaseOnlyForTheHolder(t *testing.T) {
	ctx := context.Background()
	rdb := testutil.StartRedis(t).Client(t)
	rdb.Set(ctx, "lock", "newer holder", 0)
	if ok, err := Release(ctx, rdb, "lock", "older holder"); err != nil || ok {
		t.Fatalf("a former holder released the lock: %v %v", ok, err)
	}
	if ok, err := Release(ctx, rdb, "lock", "newer holder"); err != nil || !ok {
		t.Fatalf("the holder could not release: %v %v", ok, err)
	}
	if rdb.Exists(ctx, "lock").Val() != 0 {
		t.Fatal("the lock is still there")
	}
}
