package testutil

import (
	"context"
	"testing"
)

// StopReplicaOf stops the replica of the primary at primaryAddr (its process ends; the cluster
// keeps serving every slot) and returns its address: what a WAIT for one replica on that shard
// then cannot get.
func (c *Cluster) StopReplicaOf(t testing.TB, primaryAddr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterReady)
	defer cancel()
	view, err := c.view(ctx, primaryAddr)
	if err != nil {
		c.fatalf(t, "%v", err)
	}
	var id string
	for _, n := range view {
		if n.myself && n.primary() {
			id = n.id
		}
	}
	if id == "" {
		c.fatalf(t, "StopReplicaOf: %s is not a primary", primaryAddr)
	}
	for _, n := range view {
		if n.master != id {
			continue
		}
		for _, s := range c.nodes {
			if s.Addr == n.addr {
				s.Stop()
				return n.addr
			}
		}
	}
	c.fatalf(t, "StopReplicaOf: %s has no replica", primaryAddr)
	return ""
}
