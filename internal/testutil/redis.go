// Package testutil starts the real services that integration tests run against.
package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process owned by one test.
type RedisServer struct {
	Addr string
	URL  string
	Dir  string
	cmd  *exec.Cmd
	args []string
}

// StartRedis starts a private redis-server on a free loopback port and stops it when the test
// ends. Extra arguments go to redis-server (e.g. "--appendonly", "yes"). Without a redis-server
// binary the test is skipped, except under CI (CI=true), where that is a failure.
func StartRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH: integration tests need it (apt-get install redis-server)")
		}
		t.Skip("redis-server not found on PATH; skipping integration test")
	}
	port := freePort(t)
	dir := t.TempDir()
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"),
	}, extra...)
	s := &RedisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, args: args}
	s.URL = "redis://" + s.Addr + "/0"
	s.start(t, bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *RedisServer) start(t testing.TB, bin string) {
	t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			t.Fatalf("redis-server did not answer on %s: %s", s.Addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops the server and starts it again on the same port and directory.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	s.start(t, bin)
}

// Stop kills the server; safe to call twice.
func (s *RedisServer) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Client opens a go-redis client to the server, closed when the test ends.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
