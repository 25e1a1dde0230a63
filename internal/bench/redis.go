package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is the redis-server process the benchmark owns. It mirrors internal/testutil's
// StartRedis, which needs a testing.TB: a command cannot hand it one.
type redisServer struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan error
}

// startRedis runs a private redis-server on a free loopback port with persistence off (the
// issue's ingest figure is defined without AOF or replica waits).
func startRedis(ctx context.Context) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (apt-get install redis-server): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bridge-bench-redis")
	if err != nil {
		return nil, fmt.Errorf("redis directory: %w", err)
	}
	s := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, done: make(chan error, 1)}
	// Not CommandContext: the server must outlive a cancelled ctx until stop has measured it.
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	// As the child bridges: Ctrl-C leaves it to stop, and it dies with the benchmark.
	s.cmd.SysProcAttr = childProcAttr()
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()

	c := s.client(0)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case werr := <-s.done:
			s.cmd = nil
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server exited at start (%v): %s", werr, log)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("redis-server did not answer on %s: %w", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) url(db int) string { return fmt.Sprintf("redis://%s/%d", s.addr, db) }

func (s *redisServer) client(db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.addr, DB: db})
}

// pid is the server's process id, for its peak RSS.
func (s *redisServer) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// stop kills the server and removes its directory; safe to call twice.
func (s *redisServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
	_ = os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// info reads one INFO section as a field map.
func info(ctx context.Context, c *redis.Client, section string) (map[string]string, error) {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s: %w", section, err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// usedMemory is INFO memory's used_memory: what the data set costs, without allocator slack.
func usedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	m, err := info(ctx, c, "memory")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(m["used_memory"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("INFO memory used_memory %q: %w", m["used_memory"], err)
	}
	return n, nil
}

// redisCPU is the server's user+system CPU seconds so far (INFO cpu).
func redisCPU(ctx context.Context, c *redis.Client) (float64, error) {
	m, err := info(ctx, c, "cpu")
	if err != nil {
		return 0, err
	}
	var total float64
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := strconv.ParseFloat(m[k], 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu %s %q: %w", k, m[k], err)
		}
		total += v
	}
	return total, nil
}

// commandCalls is INFO commandstats as calls per command. Redis counts the commands a script
// runs as well as the script call itself, so a script shows up with its contents.
func commandCalls(ctx context.Context, c *redis.Client) (map[string]int64, error) {
	m, err := info(ctx, c, "commandstats")
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(v, ",")
		n, err := strconv.ParseInt(strings.TrimPrefix(calls, "calls="), 10, 64)
		if err == nil {
			out[name] = n
		}
	}
	return out, nil
}

// family is one group of keys and what they cost together.
type family struct {
	Name  string
	Keys  int
	Bytes int64
}

// keyFamilies sizes every key of the database with MEMORY USAGE and groups them by their
// prefix (up to the second colon, ids and e-mails cut off), so the memory of a learner, a
// row and an event record can be told apart. It walks the whole keyspace: call it only on the
// benchmark's own, bounded data set.
func keyFamilies(ctx context.Context, c *redis.Client) ([]family, error) {
	byName := map[string]*family{}
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("SCAN: %w", err)
		}
		pipe := c.Pipeline()
		sizes := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			// SAMPLES 0: every element of a collection, so a large index is not estimated.
			sizes[i] = pipe.MemoryUsage(ctx, k, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("MEMORY USAGE: %w", err)
		}
		for i, k := range keys {
			n, err := sizes[i].Result()
			if err != nil {
				continue // expired between SCAN and MEMORY USAGE
			}
			name := keyFamily(k)
			f := byName[name]
			if f == nil {
				f = &family{Name: name}
				byName[name] = f
			}
			f.Keys++
			f.Bytes += n
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	out := make([]family, 0, len(byName))
	for _, f := range byName {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	return out, nil
}

// keyFamily names a key's family: "bb:row:…" → "bb:row:*", "asynq:{default}:t:…" →
// "asynq:{default}:t:*", a key without an id part keeps its name.
func keyFamily(k string) string {
	parts := strings.SplitN(k, ":", 4)
	switch {
	case strings.HasPrefix(k, "asynq:") && len(parts) >= 4:
		return strings.Join(parts[:3], ":") + ":*"
	case len(parts) >= 3:
		return parts[0] + ":" + parts[1] + ":*"
	}
	return k
}

// peakRSS reads a process's VmHWM (peak resident set) from /proc, in bytes; 0 if unknown.
func peakRSS(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := strings.Fields(string(v))
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}
