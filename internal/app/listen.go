package app

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeouts of both listeners. A sender gets 10 s for its headers and 30 s for the whole request,
// so a connection that trickles bytes is dropped; an idle keep-alive connection is closed after
// 30 s, so thousands of them cannot be parked on the bridge.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 64 << 10
)

// adminMaxConns bounds the admin listener's connections: it serves operators, the dashboard and
// metric scrapes, never the public.
const adminMaxConns = 128

// publicMaxConns bounds the public listener's connections. Beyond the requests in flight
// (BRIDGE_WEBHOOK_MAX_INFLIGHT), keep-alive connections sit idle between requests and probes
// come in, so it allows four times as many; each costs some 10 KiB (buffers and a goroutine).
func publicMaxConns(maxInflight int) int {
	return max(64, 4*maxInflight)
}

// newServer builds the HTTP server of a listener.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// listen opens a TCP listener that holds at most maxConns connections at once. Beyond that it
// stops accepting, so further connections wait in the kernel's backlog instead of costing the
// process memory; each is accepted when an earlier one closes.
func listen(addr string, maxConns int) (net.Listener, error) {
	if maxConns < 1 {
		return nil, fmt.Errorf("listen %s: connection limit %d, want at least 1", addr, maxConns)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, maxConns), done: make(chan struct{})}, nil
}

// limitListener is golang.org/x/net/netutil.LimitListener, kept here so that x/net stays an
// indirect dependency.
type limitListener struct {
	net.Listener
	slots     chan struct{} // one token per open connection
	done      chan struct{} // closed by Close, so an Accept waiting for a slot returns
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its slot back when closed, once however often it is closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
