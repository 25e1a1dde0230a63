package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the sentinels of a SentinelGroup monitor.
const SentinelMaster = "bridge"

// SentinelGroup is a Redis primary, one replica and three sentinels (quorum 2), all on
// loopback, owned by one test. Timeouts are short so that a failover takes seconds:
// down-after-milliseconds 1000, failover-timeout 5000, parallel-syncs 1.
type SentinelGroup struct {
	// Master is the master name the sentinels monitor.
	Master string
	// Sentinels are the sentinels' addresses.
	Sentinels []string
	// SentinelCommand says how the sentinels were started: "redis-sentinel" or
	// "redis-server --sentinel" (the same binary on Debian).
	SentinelCommand string

	bin       string
	data      []*RedisServer // [0] started as the primary, [1] as its replica
	sentinels []*sentinelProc
	killed    *RedisServer // the primary KillPrimary stopped, until RestartOld
	killedAt  time.Time
}

type sentinelProc struct {
	addr, dir string
	cmd       *exec.Cmd
}

func (s *sentinelProc) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// StartSentinelGroup starts a primary, a replica of it and three sentinels monitoring it as
// SentinelMaster, and returns once every sentinel sees the primary, the replica (linked) and
// the two other sentinels. Every process is killed when the test ends. Without redis-server
// the test is skipped, except under CI (CI=true), where that is a failure. The sentinels run
// as redis-sentinel when it is on PATH, else as redis-server --sentinel.
func StartSentinelGroup(t testing.TB) *SentinelGroup {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH: the Sentinel tests need it (apt-get install redis-server redis-sentinel)")
		}
		t.Skip("redis-server not found on PATH; skipping Sentinel test (apt-get install redis-server redis-sentinel)")
	}
	sentinelBin, sentinelArgs, how := bin, []string{"--sentinel"}, "redis-server --sentinel"
	if sb, err := exec.LookPath("redis-sentinel"); err == nil {
		sentinelBin, sentinelArgs, how = sb, nil, "redis-sentinel"
	}
	g := &SentinelGroup{Master: SentinelMaster, SentinelCommand: how, bin: bin}
	// Diskless replication without its default 5 s delay: a (re)joining replica syncs at once.
	repl := []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	primary := StartRedis(t, repl...)
	replica := StartRedis(t, append(repl, "--replicaof", "127.0.0.1", portOf(primary.Addr))...)
	g.data = []*RedisServer{primary, replica}
	g.waitLinked(t, replica.Addr, 15*time.Second)

	for i := 0; i < 3; i++ {
		port := freePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		// A sentinel rewrites its configuration file as it learns: it must be writable.
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, filepath.Join(dir, "sentinel.log"), g.Master, portOf(primary.Addr), g.Master, g.Master, g.Master)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &sentinelProc{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
		s.cmd = exec.Command(sentinelBin, append([]string{conf}, sentinelArgs...)...)
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start sentinel: %v", err)
		}
		t.Cleanup(s.stop)
		g.sentinels = append(g.sentinels, s)
		g.Sentinels = append(g.Sentinels, s.addr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			g.logTails(t)
		}
	})

	// Ready: every sentinel knows the primary as up, the replica as linked, the other two
	// sentinels. Discovery runs on hello messages every 2 s and INFO every 10 s at worst.
	deadline := time.Now().Add(30 * time.Second)
	for {
		problem := ""
		for _, s := range g.sentinels {
			if p := g.sentinelReady(s.addr); p != "" {
				problem = s.addr + ": " + p
				break
			}
		}
		if problem == "" {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel group not ready within 30s: %s", problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *SentinelGroup) sentinelReady(addr string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	m, err := c.Master(ctx, g.Master).Result()
	if err != nil {
		return err.Error()
	}
	if m["flags"] != "master" {
		return "master flags " + m["flags"]
	}
	if m["num-other-sentinels"] != "2" {
		return "sees " + m["num-other-sentinels"] + " other sentinels"
	}
	replicas, err := c.Replicas(ctx, g.Master).Result()
	if err != nil {
		return err.Error()
	}
	for _, r := range replicas {
		if r["flags"] == "slave" && r["master-link-status"] == "ok" {
			return ""
		}
	}
	return fmt.Sprintf("no linked replica among %d", len(replicas))
}

// SentinelAddrs returns the sentinels' addresses joined by commas, the form of
// BRIDGE_REDIS_SENTINEL_ADDRS.
func (g *SentinelGroup) SentinelAddrs() string { return strings.Join(g.Sentinels, ",") }

// masterAddrs asks every sentinel for the primary's address; unreachable ones are left out.
func (g *SentinelGroup) masterAddrs() []string {
	var out []string
	for _, addr := range g.Sentinels {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, Protocol: 2})
		hp, err := c.GetMasterAddrByName(ctx, g.Master).Result()
		_ = c.Close()
		cancel()
		if err == nil && len(hp) == 2 {
			out = append(out, net.JoinHostPort(hp[0], hp[1]))
		}
	}
	return out
}

// Primary returns the primary's address as most sentinels report it.
func (g *SentinelGroup) Primary(t testing.TB) string {
	t.Helper()
	votes := map[string]int{}
	best := ""
	for _, a := range g.masterAddrs() {
		votes[a]++
		if votes[a] > votes[best] {
			best = a
		}
	}
	if best == "" {
		t.Fatal("no sentinel reports a primary")
	}
	return best
}

// KillPrimary SIGKILLs the process of the current primary and returns its address.
func (g *SentinelGroup) KillPrimary(t testing.TB) string {
	t.Helper()
	addr := g.Primary(t)
	for _, s := range g.data {
		if s.Addr == addr && s.cmd != nil {
			s.Stop() // SIGKILL
			g.killed, g.killedAt = s, time.Now()
			return addr
		}
	}
	t.Fatalf("the primary %s is not a running process of this group", addr)
	return ""
}

// WaitFailover waits until at least two sentinels (the quorum) report a primary other than the
// one KillPrimary killed and that primary accepts a write; it returns the new primary and the
// time since the kill.
func (g *SentinelGroup) WaitFailover(t testing.TB, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	if g.killed == nil {
		t.Fatal("WaitFailover without KillPrimary")
	}
	deadline := time.Now().Add(timeout)
	for {
		votes := map[string]int{}
		for _, a := range g.masterAddrs() {
			if a != g.killed.Addr {
				votes[a]++
			}
		}
		for a, n := range votes {
			if n >= 2 && acceptsWrites(a) {
				return a, time.Since(g.killedAt)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover within %s of the kill (sentinels report %v)", timeout, g.masterAddrs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// acceptsWrites: the instance is a primary and takes a write (in database 15, away from the
// data under test).
func acceptsWrites(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, DB: 15, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	return c.Set(ctx, "sentinel-harness:probe", time.Now().UnixNano(), time.Minute).Err() == nil
}

// RestartOld starts the primary KillPrimary killed again, on its address and directory, as a
// replica of the current primary (what an orchestrator that asks the sentinels does; left
// alone, a sentinel converts a returning old primary only after its INFO period and an 8 s
// grace), and waits until the current primary counts it as an online replica.
func (g *SentinelGroup) RestartOld(t testing.TB, timeout time.Duration) {
	t.Helper()
	if g.killed == nil {
		t.Fatal("RestartOld without KillPrimary")
	}
	primary := g.Primary(t)
	if primary == g.killed.Addr {
		t.Fatal("RestartOld before the failover: the sentinels still report the killed primary")
	}
	host, port, _ := net.SplitHostPort(primary)
	s := g.killed
	s.args = append(withoutReplicaOf(s.args), "--replicaof", host, port)
	s.start(t, g.bin)
	g.killed = nil
	g.waitLinked(t, s.Addr, timeout)
	deadline := time.Now().Add(timeout)
	for {
		if n := onlineReplicas(primary); n >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted %s is not an online replica of %s within %s", s.Addr, primary, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLinked waits until the replica at addr reports master_link_status:up.
func (g *SentinelGroup) waitLinked(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if infoField(addr, "replication", "master_link_status") == "up" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not linked to its primary within %s", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onlineReplicas counts the replicas the instance at addr reports with state=online.
func onlineReplicas(addr string) int {
	n := 0
	for i := 0; i < 16; i++ {
		if strings.Contains(infoField(addr, "replication", "slave"+strconv.Itoa(i)), "state=online") {
			n++
		}
	}
	return n
}

func infoField(addr, section, field string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// Client opens a go-redis client to the current primary, closed when the test ends.
func (g *SentinelGroup) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: g.Primary(t)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// logTails logs the end of every sentinel's and server's log (no secrets: no passwords are set).
func (g *SentinelGroup) logTails(t testing.TB) {
	tail := func(file string) string {
		b, _ := os.ReadFile(file)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		return strings.Join(lines[max(0, len(lines)-25):], "\n")
	}
	for _, s := range g.sentinels {
		t.Logf("sentinel %s log:\n%s", s.addr, tail(filepath.Join(s.dir, "sentinel.log")))
	}
	for _, s := range g.data {
		t.Logf("redis %s log:\n%s", s.Addr, tail(filepath.Join(s.Dir, "redis.log")))
	}
}

func withoutReplicaOf(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--replicaof" && i+2 < len(args) {
			i += 2
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
