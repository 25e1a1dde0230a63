package durable

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/testutil"
)

// On a real Redis Cluster of three primaries with a replica each, a wait writes a marker on
// every primary and waits there; a shard whose replica is gone fails the wait, naming it.
func TestClusterWaitsOnEveryPrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	cl := testutil.StartCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	d := Open(cc, Options{MinReplicas: 1, Timeout: 300 * time.Millisecond, Prefix: "bb:"})
	if _, ok := d.(*Cluster); !ok {
		t.Fatalf("Open on a cluster client gave %T", d)
	}
	if err := d.Detect(ctx); err != nil {
		t.Fatal(err)
	}
	if got := d.Describe(); !strings.HasPrefix(got, "on each of the 3 Cluster primaries, replicas: waits for 1 replica") {
		t.Fatalf("Describe: %q", got)
	}
	if p := d.Problems(); len(p) != 0 {
		t.Fatalf("problems with every replica connected: %v", p)
	}
	if err := d.Wait(ctx); err != nil {
		t.Fatalf("wait with every replica connected: %v", err)
	}
	// One marker per primary, each on the primary serving its slot.
	var mu sync.Mutex
	markers := map[string]string{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, "bb:durable:*").Result()
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			markers[k] = c.Options().Addr
		}
		return err
	})
	if err != nil || len(markers) != 3 {
		t.Fatalf("markers %v (%v), want one on each of 3 primaries", markers, err)
	}
	victim := ""
	for k, addr := range markers {
		if cl.PrimaryOf(t, k) != addr {
			t.Fatalf("marker %s on %s, not on the primary of its slot", k, addr)
		}
		victim = addr
	}

	cl.StopReplicaOf(t, victim)
	start := time.Now()
	err = d.Wait(ctx)
	if !errors.Is(err, ErrNotConfirmed) || !strings.Contains(err.Error(), victim) {
		t.Fatalf("wait with %s's replica gone: %v, want ErrNotConfirmed naming it", victim, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the failed wait took %s", took)
	}
	// Redis notices the replica is gone within a replication timeout; the check then says so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = d.Detect(ctx)
		if p := d.Problems(); len(p) == 1 && strings.Contains(p[0], victim) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("problems %v: want one naming %s", d.Problems(), victim)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
