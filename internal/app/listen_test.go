package app

import (
	"errors"
	"net"
	"testing"
	"time"
)

// Issue 7 item 12: a listener holds a bounded number of connections; the rest wait in the
// backlog until one closes.
func TestListenLimitsConnections(t *testing.T) {
	ln, err := listen("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with a limit of 2")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close must not free a second slot
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting connection was not accepted after one closed")
	}
	select {
	case <-accepted:
		t.Fatal("closing one connection twice freed two slots")
	case <-time.After(200 * time.Millisecond):
	}
}

// Closing the listener ends an Accept that waits for a free slot.
func TestListenCloseWhileFull(t *testing.T) {
	ln, err := listen("127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(); errc <- err }()
	ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
	if _, err := listen("127.0.0.1:0", 0); err == nil {
		t.Fatal("a limit of 0 was accepted")
	}
}

// Both listeners drop slow senders and do not park idle keep-alive connections for long.
func TestServerTimeouts(t *testing.T) {
	s := newServer(nil)
	if s.ReadHeaderTimeout <= 0 || s.ReadHeaderTimeout > 10*time.Second || s.ReadTimeout <= 0 || s.ReadTimeout > 30*time.Second {
		t.Errorf("read timeouts %s/%s: want set, at most 10s/30s", s.ReadHeaderTimeout, s.ReadTimeout)
	}
	if s.IdleTimeout <= 0 || s.IdleTimeout > 30*time.Second {
		t.Errorf("IdleTimeout %s: want at most 30s", s.IdleTimeout)
	}
	if got := publicMaxConns(256); got != 1024 {
		t.Errorf("publicMaxConns(256) = %d", got)
	}
	if got := publicMaxConns(1); got != 64 {
		t.Errorf("publicMaxConns(1) = %d", got)
	}
}
