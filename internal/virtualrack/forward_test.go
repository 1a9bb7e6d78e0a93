package virtualrack

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestForwardRefusesNonLoopback(t *testing.T) {
	r := &Rack{}
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.1.2.3:6385", "localhost:0", "nonsense"} {
		if _, err := r.Forward(addr); err == nil {
			t.Errorf("Forward(%q) accepted", addr)
		}
	}
}

// TestRelay: bytes go both ways between a client and the target the dial
// function reaches (here a plain loopback echo server), and the relay
// ends, closing its listener and connections, when its context does.
func TestRelay(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					c.Write([]byte("echo " + sc.Text() + "\n"))
				}
			}()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var d net.Dialer
	done := make(chan struct{})
	go func() { defer close(done); relay(ctx, ln, d.DialContext, echo.Addr().String()) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, msg := range []string{"one", "two"} {
		c.Write([]byte(msg + "\n"))
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "echo "+msg {
			t.Fatalf("relayed answer %q, %v", line, err)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("relay still running after its context ended")
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("the relayed connection stayed open")
	}
	// Asked of the listener itself: a dial to its port could reach
	// another test's listener that took the freed port meanwhile.
	tl := ln.(*net.TCPListener)
	tl.SetDeadline(time.Now().Add(time.Second)) //nolint:errcheck // fails once closed, as wanted
	if _, err := tl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the relay's listener stayed open: Accept = %v", err)
	}
}
