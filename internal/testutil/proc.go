package testutil

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Bridge builds the bridge binary once per test process and returns its path.
func Bridge(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bridge-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bridge")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/bridge")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Output collects a process's output safely while it runs.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) { o.mu.Lock(); defer o.mu.Unlock(); return o.b.Write(p) }
func (o *Output) String() string              { o.mu.Lock(); defer o.mu.Unlock(); return o.b.String() }

// Proc is one running bridge process.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *Output
	HTTP, Admin    string // listener addresses
	Env            []string
	Args           []string
	done           chan error
}

// StartBridge runs the bridge binary with env and args on free loopback ports and waits for its
// admin /healthz. The process is killed when the test ends.
func StartBridge(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{HTTP: FreeAddr(t), Admin: FreeAddr(t), Env: env, Args: args}
	p.launch(t)
	return p
}

func (p *Proc) launch(t testing.TB) {
	t.Helper()
	p.Stdout, p.Stderr, p.done = &Output{}, &Output{}, make(chan error, 1)
	p.Cmd = exec.Command(Bridge(t), p.Args...)
	p.Cmd.Dir = os.TempDir()
	p.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"BRIDGE_HTTP_ADDR=" + p.HTTP, "BRIDGE_ADMIN_ADDR=" + p.Admin}, p.Env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := p.Cmd, p.done
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("bridge %v stderr:\n%s", p.Args, p.Stderr)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get("http://" + p.Admin + "/healthz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("bridge %v exited at start: %v\nstderr:\n%s", p.Args, err, p.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge %v did not become healthy\nstderr:\n%s", p.Args, p.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and requires exit code 0 within timeout.
func (p *Proc) Stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("bridge %v exit after SIGTERM: %v", p.Args, err)
		}
	case <-time.After(timeout):
		t.Fatalf("bridge %v: no exit within %s of SIGTERM", p.Args, timeout)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Restart launches the same command again on the same addresses (after Kill or Stop).
func (p *Proc) Restart(t testing.TB) { p.launch(t) }
