package durable

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeRedis is a tiny RESP2 server that plays a primary of a chosen version and AOF setting,
// answers WAIT and WAITAOF as told, and records every command with the connection it came on.
// The Redis on this machine is 7.0, which has no WAITAOF: the fake is how the 7.2 path is tested.
type fakeRedis struct {
	t  *testing.T
	ln net.Listener

	mu       sync.Mutex
	version  string
	aof      bool
	replicas int    // connected_slaves in INFO replication, and WAIT's answer
	fsynced  int    // WAITAOF's first element
	waitErr  string // when set, WAIT and WAITAOF answer this error
	setErr   string // when set, SET answers this error
	waitFor  time.Duration
	conns    int
	calls    []call
}

type call struct {
	conn int
	args []string
}

func (c call) String() string { return strings.Join(c.args, " ") }

func newFakeRedis(t *testing.T, version string, aof bool) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{t: t, ln: ln, version: version, aof: aof, fsynced: 1}
	var wg sync.WaitGroup
	var open sync.Map
	t.Cleanup(func() {
		_ = ln.Close()
		open.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			id := f.conns
			f.mu.Unlock()
			open.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer open.Delete(c)
				f.serve(c, id)
			}()
		}
	}()
	return f
}

// client opens a go-redis client to the fake; readTimeout 0 keeps go-redis's default.
func (f *fakeRedis) client(t *testing.T, readTimeout time.Duration) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: f.ln.Addr().String(), ReadTimeout: readTimeout, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (f *fakeRedis) serve(c net.Conn, id int) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, call{conn: id, args: args})
		reply, delay := f.answer(id, args)
		f.mu.Unlock()
		time.Sleep(delay)
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// answer is the reply to one command; the caller holds f.mu.
func (f *fakeRedis) answer(conn int, args []string) (string, time.Duration) {
	name := strings.ToUpper(args[0])
	switch name {
	case "PING":
		return "+PONG\r\n", 0
	case "SET":
		if f.setErr != "" {
			return "-" + f.setErr + "\r\n", 0
		}
		return "+OK\r\n", 0
	case "SELECT":
		return "+OK\r\n", 0
	case "CLIENT":
		if len(args) > 1 && strings.EqualFold(args[1], "ID") {
			return ":" + strconv.Itoa(conn) + "\r\n", 0
		}
		return "+OK\r\n", 0
	case "INFO":
		var b strings.Builder
		switch strings.ToLower(strings.Join(args[1:], " ")) {
		case "server":
			fmt.Fprintf(&b, "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\n", f.version)
		case "persistence":
			aof := 0
			if f.aof {
				aof = 1
			}
			fmt.Fprintf(&b, "# Persistence\r\nloading:0\r\naof_enabled:%d\r\n", aof)
		case "replication":
			fmt.Fprintf(&b, "# Replication\r\nrole:master\r\nconnected_slaves:%d\r\n", f.replicas)
		default:
			return "-ERR syntax error\r\n", 0
		}
		return fmt.Sprintf("$%d\r\n%s\r\n", b.Len(), b.String()), 0
	case "WAIT":
		if f.waitErr != "" {
			return "-" + f.waitErr + "\r\n", f.waitFor
		}
		return ":" + strconv.Itoa(f.replicas) + "\r\n", f.waitFor
	case "WAITAOF":
		if !VersionAtLeast(f.version, 7, 2) {
			return "-ERR unknown command 'WAITAOF'\r\n", 0
		}
		if !f.aof {
			return "-ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.\r\n", 0
		}
		if f.waitErr != "" {
			return "-" + f.waitErr + "\r\n", f.waitFor
		}
		return fmt.Sprintf("*2\r\n:%d\r\n:0\r\n", f.fsynced), f.waitFor
	}
	return fmt.Sprintf("-ERR unknown command '%s'\r\n", args[0]), 0
}

// readCommand reads one RESP array of bulk strings, as clients send commands.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("not an array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, 0, n)
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

// sent returns the commands recorded since the last call, without connection handshakes.
func (f *fakeRedis) sent() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		switch strings.ToUpper(c.args[0]) {
		case "HELLO", "CLIENT", "SELECT", "PING":
			continue
		}
		out = append(out, c)
	}
	f.calls = nil
	return out
}

func (f *fakeRedis) set(fn func(f *fakeRedis)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
