package testutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestIntegrationCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	start := time.Now()
	cl := StartCluster(t)
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	checkCluster(t, cl)
}

// Without redis-cli the harness forms the cluster itself.
func TestIntegrationClusterWithoutRedisCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	look := lookRedisCLI
	lookRedisCLI = func() (string, error) { return "", errors.New("redis-cli hidden by the test") }
	t.Cleanup(func() { lookRedisCLI = look })
	start := time.Now()
	cl := StartCluster(t)
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	checkCluster(t, cl)
}

func checkCluster(t *testing.T, cl *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs := cl.Addrs()
	if len(addrs) != 6 {
		t.Fatalf("addrs %v, want six", addrs)
	}
	for _, n := range cl.nodes {
		if !strings.HasPrefix(n.Addr, "127.0.0.1:") {
			t.Errorf("node %s not on loopback", n.Addr)
		}
		if _, err := os.Stat(filepath.Join(n.Dir, "nodes.conf")); err != nil {
			t.Errorf("node %s: no nodes.conf in its directory: %v", n.Addr, err)
		}
		info, err := n.Client(t).ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6") {
			t.Errorf("node %s: CLUSTER INFO %v:\n%s", n.Addr, err, info)
		}
	}

	cc := cl.Client(t)
	// Keys in every primary's slots.
	keys := []string{"probe:a", "probe:b", "probe:c", "probe:d", "probe:e", "probe:f"}
	owners := map[string]bool{}
	for _, k := range keys {
		if err := cc.Set(ctx, k, "v1-"+k, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		p := cl.PrimaryOf(t, k)
		owners[p] = true
		if !slices.Contains(addrs, p) {
			t.Fatalf("PrimaryOf(%s) = %s, not a node", k, p)
		}
		// The node PrimaryOf names serves the key itself, without a redirect.
		if v, err := cl.node(p).Get(ctx, k).Result(); err != nil || v != "v1-"+k {
			t.Fatalf("GET %s on %s: %q, %v", k, p, v, err)
		}
	}
	if len(owners) < 2 {
		t.Errorf("keys %v all on %v", keys, owners)
	}

	key := keys[0]
	old := cl.PrimaryOf(t, key)
	start := time.Now()
	cl.Failover(t, old)
	t.Logf("failover of %s took %v", old, time.Since(start).Round(time.Millisecond))
	now := cl.PrimaryOf(t, key)
	if now == old {
		t.Fatalf("%s still serves %s after its failover", old, key)
	}
	if role, err := cl.node(old).Do(ctx, "ROLE").Slice(); err != nil || role[0] != "slave" {
		t.Errorf("old primary %s: ROLE %v, %v", old, role, err)
	}
	// Through the same cluster client: readable and writable on the new primary.
	for _, k := range keys {
		if v, err := cc.Get(ctx, k).Result(); err != nil || v != "v1-"+k {
			t.Errorf("after failover, get %s: %q, %v", k, v, err)
		}
	}
	if err := cc.Set(ctx, key, "v2", 0).Err(); err != nil {
		t.Fatalf("after failover, set: %v", err)
	}
	if v, err := cc.Get(ctx, key).Result(); err != nil || v != "v2" {
		t.Errorf("after failover, get: %q, %v", v, err)
	}
	if v, err := cl.node(now).Get(ctx, key).Result(); err != nil || v != "v2" {
		t.Errorf("GET on the new primary %s: %q, %v", now, v, err)
	}
	// The old primary, now a replica, redirects.
	if err := cl.node(old).Get(ctx, key).Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
		t.Errorf("GET on the old primary: %v, want MOVED", err)
	}
	// A fresh client discovers the new layout too.
	fresh := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer fresh.Close()
	if v, err := fresh.Get(ctx, key).Result(); err != nil || v != "v2" {
		t.Errorf("fresh client get: %q, %v", v, err)
	}
}
