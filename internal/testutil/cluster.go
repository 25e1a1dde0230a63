package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three primaries with one replica each: six redis-server
// processes on loopback, each with its own directory, owned by one test. The node timeout is
// 2 s, so failures are noticed quickly.
type Cluster struct {
	nodes   []*RedisServer           // in start order; roles change with Failover
	clients map[string]*redis.Client // one plain client per node, for the harness itself
}

// clusterReady bounds how long the cluster may take to form, or to settle after a failover.
const clusterReady = 30 * time.Second

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// lookRedisCLI finds redis-cli; a test replaces it to exercise the creation without it.
var lookRedisCLI = func() (string, error) { return exec.LookPath("redis-cli") }

// StartCluster starts six cluster-enabled redis-servers on free loopback ports, makes three of
// them primaries (the hash slots split evenly) and the others their replicas, and returns once
// every node reports cluster_state:ok, agrees on the topology, and every replica's link to its
// primary is up. The cluster is created with redis-cli --cluster create, or, without redis-cli,
// with CLUSTER MEET / ADDSLOTSRANGE / REPLICATE. Every process is killed when the test ends.
// Without redis-server the test is skipped, except under CI (CI=true), where that is a failure.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{clients: map[string]*redis.Client{}}
	for range 6 {
		n := startClusterNode(t)
		c.nodes = append(c.nodes, n)
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr, PoolSize: 2, MaxRetries: -1})
		c.clients[n.Addr] = rdb
		t.Cleanup(func() { _ = rdb.Close() }) // before the node stops
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReady)
	defer cancel()
	if cli, err := lookRedisCLI(); err == nil {
		args := append([]string{"--cluster", "create"}, c.Addrs()...)
		args = append(args, "--cluster-replicas", "1", "--cluster-yes")
		out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
		if err != nil {
			c.fatalf(t, "redis-cli --cluster create: %v\n%s", err, out)
		}
	} else {
		c.create(t, ctx)
	}
	c.waitReady(t, ctx, "")
	return c
}

// startClusterNode starts one cluster node. StartRedis picks the port and directory (and skips
// without redis-server); the node is then restarted in cluster mode with a cluster bus port
// chosen while its data port is taken, so the two cannot be the same (the default bus port,
// port+10000, may be taken or out of range).
func startClusterNode(t testing.TB) *RedisServer {
	t.Helper()
	// Diskless replication without its default 5 s delay: a replica syncs at once.
	s := StartRedis(t, "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
	s.args = append(s.args,
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(s.Dir, "nodes.conf"),
		"--cluster-port", strconv.Itoa(freePort(t)),
		"--cluster-node-timeout", "2000",
	)
	s.Restart(t)
	return s
}

// create forms the cluster without redis-cli: nodes 0-2 become the primaries, node i+3 the
// replica of node i.
func (c *Cluster) create(t testing.TB, ctx context.Context) {
	t.Helper()
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		id, err := c.node(n.Addr).ClusterMyID(ctx).Result()
		if err != nil {
			c.fatalf(t, "CLUSTER MYID on %s: %v", n.Addr, err)
		}
		ids[i] = id
	}
	first := c.node(c.nodes[0].Addr)
	for _, n := range c.nodes[1:] {
		bus := argValue(n.args, "--cluster-port")
		if err := first.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", portOf(n.Addr), bus).Err(); err != nil {
			c.fatalf(t, "CLUSTER MEET %s: %v", n.Addr, err)
		}
	}
	per := clusterSlots / 3
	for i := range 3 {
		lo, hi := i*per, (i+1)*per-1
		if i == 2 {
			hi = clusterSlots - 1
		}
		if err := c.node(c.nodes[i].Addr).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			c.fatalf(t, "CLUSTER ADDSLOTSRANGE on %s: %v", c.nodes[i].Addr, err)
		}
	}
	// A replica can only follow a primary it has heard of.
	for i, n := range c.nodes[3:] {
		for {
			err := c.node(n.Addr).ClusterReplicate(ctx, ids[i]).Err()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				c.fatalf(t, "CLUSTER REPLICATE on %s: %v", n.Addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Addrs returns the addresses of all six nodes, primaries and replicas.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client opens a cluster client seeded with every node, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// PrimaryOf returns the address of the primary serving key's hash slot.
func (c *Cluster) PrimaryOf(t testing.TB, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := c.node(c.nodes[0].Addr)
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		c.fatalf(t, "CLUSTER KEYSLOT: %v", err)
	}
	view, err := c.view(ctx, c.nodes[0].Addr)
	if err != nil {
		c.fatalf(t, "%v", err)
	}
	for _, n := range view {
		if n.primary() && n.serves(int(slot)) {
			return n.addr
		}
	}
	c.fatalf(t, "no primary serves slot %d (key %q):\n%s", slot, key, rdb.ClusterNodes(ctx).Val())
	return ""
}

// Failover makes the replica of the primary at primaryAddr take over (CLUSTER FAILOVER, the
// coordinated manual failover: no write acknowledged by the old primary is lost) and returns
// once the replica is a primary, the old primary its replica, and the cluster settled as
// StartCluster leaves it.
func (c *Cluster) Failover(t testing.TB, primaryAddr string) {
	t.Helper()
	if c.clients[primaryAddr] == nil {
		c.fatalf(t, "Failover: %s is not a node of this cluster (%v)", primaryAddr, c.Addrs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReady)
	defer cancel()
	view, err := c.view(ctx, primaryAddr)
	if err != nil {
		c.fatalf(t, "%v", err)
	}
	var self *clusterNodeView
	for i := range view {
		if view[i].myself {
			self = &view[i]
		}
	}
	if self == nil || !self.primary() {
		c.fatalf(t, "Failover: %s is not a primary", primaryAddr)
	}
	replica := ""
	for _, n := range view {
		if n.master == self.id {
			replica = n.addr
		}
	}
	if replica == "" {
		c.fatalf(t, "Failover: %s has no replica", primaryAddr)
	}
	rdb := c.node(replica)
	for {
		if err := rdb.ClusterFailover(ctx).Err(); err != nil {
			c.fatalf(t, "CLUSTER FAILOVER on %s: %v", replica, err)
		}
		// A manual failover that cannot complete is abandoned after 5 s; ask again then.
		asked := time.Now()
		for time.Since(asked) < 6*time.Second {
			if role, _ := rdb.Do(ctx, "ROLE").Slice(); len(role) > 0 && role[0] == "master" {
				c.waitReady(t, ctx, replica)
				return
			}
			if ctx.Err() != nil {
				c.fatalf(t, "Failover: %s did not become a primary within %v", replica, clusterReady)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitReady waits until every node reports cluster_state:ok and sees the same three primaries
// covering all slots, each with one replica whose link is up; and, when primary is not empty,
// until every node sees it as a primary.
func (c *Cluster) waitReady(t testing.TB, ctx context.Context, primary string) {
	t.Helper()
	var last error // the last error seen before the deadline, the useful one
	for {
		err := c.ready(ctx, primary)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			c.fatalf(t, "Redis Cluster not ready within %v: %v", clusterReady, last)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) ready(ctx context.Context, primary string) error {
	var want string
	for _, n := range c.nodes {
		rdb := c.node(n.Addr)
		info, err := rdb.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", n.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", n.Addr)
		}
		view, err := c.view(ctx, n.Addr)
		if err != nil {
			return err
		}
		got, err := topology(view)
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr, err)
		}
		if want == "" {
			want = got
		} else if got != want {
			return fmt.Errorf("nodes disagree on the topology: %q and %q", want, got)
		}
		if primary != "" && !strings.Contains(got, primary+"<") {
			return fmt.Errorf("%s does not see %s as a primary yet", n.Addr, primary)
		}
		repl, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication on %s: %w", n.Addr, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: link to its primary not up", n.Addr)
		}
	}
	return nil
}

// topology describes a node's view as "primary<replica ..." sorted, after checking that three
// healthy primaries cover every slot and each has exactly one healthy replica.
func topology(view []clusterNodeView) (string, error) {
	var parts []string
	covered := 0
	for _, p := range view {
		if p.failing {
			return "", fmt.Errorf("node %s flagged failing or not yet joined", p.addr)
		}
		if !p.primary() {
			continue
		}
		for _, r := range p.slots {
			covered += r[1] - r[0] + 1
		}
		var replicas []string
		for _, r := range view {
			if r.master == p.id {
				replicas = append(replicas, r.addr)
			}
		}
		if len(replicas) != 1 {
			return "", fmt.Errorf("primary %s has replicas %v, want one", p.addr, replicas)
		}
		parts = append(parts, p.addr+"<"+replicas[0])
	}
	if len(view) != 6 || len(parts) != 3 || covered != clusterSlots {
		return "", fmt.Errorf("%d nodes, %d primaries with slots, %d slots covered; want 6, 3, %d",
			len(view), len(parts), covered, clusterSlots)
	}
	slices.Sort(parts)
	return strings.Join(parts, " "), nil
}

// clusterNodeView is one line of CLUSTER NODES.
type clusterNodeView struct {
	id, addr, master string // master: the primary's id for a replica, "-" for a primary
	myself, failing  bool
	isMaster         bool
	slots            [][2]int
}

func (n clusterNodeView) primary() bool { return n.isMaster && len(n.slots) > 0 }

func (n clusterNodeView) serves(slot int) bool {
	for _, r := range n.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// view parses CLUSTER NODES as seen by the node at addr.
func (c *Cluster) view(ctx context.Context, addr string) ([]clusterNodeView, error) {
	text, err := c.node(addr).ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", addr, err)
	}
	var view []clusterNodeView
	for line := range strings.Lines(text) {
		// <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <epoch> <link> <slot>...
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNodeView{id: f[0], addr: f[1], master: f[3]}
		if i := strings.IndexAny(n.addr, "@,"); i >= 0 {
			n.addr = n.addr[:i]
		}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "myself":
				n.myself = true
			case "master":
				n.isMaster = true
			case "fail", "fail?", "handshake", "noaddr":
				n.failing = true
			}
		}
		if f[7] != "connected" {
			n.failing = true
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being imported or migrated
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER NODES on %s: bad slot %q", addr, s)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		view = append(view, n)
	}
	return view, nil
}

// node returns the harness's client to the node at addr.
func (c *Cluster) node(addr string) *redis.Client {
	if rdb := c.clients[addr]; rdb != nil {
		return rdb
	}
	panic("testutil: " + addr + " is not a node of this cluster")
}

// fatalf fails the test on a harness problem, with the end of every node's log.
func (c *Cluster) fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	for _, n := range c.nodes {
		b, _ := os.ReadFile(filepath.Join(n.Dir, "redis.log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		t.Logf("redis cluster node %s, log tail:\n%s", n.Addr, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	t.Fatalf(format, args...)
}

// argValue returns the value following name in args ("" when absent); the last one wins, as in
// redis-server.
func argValue(args []string, name string) string {
	v := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			v = args[i+1]
		}
	}
	return v
}
