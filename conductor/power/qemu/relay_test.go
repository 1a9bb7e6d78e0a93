package qemu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// serveOnce accepts one connection on 127.0.0.1 and runs handle on it.
func serveOnce(t *testing.T, handle func(net.Conn)) (host, port string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}()
	host, port, _ = net.SplitHostPort(l.Addr().String())
	return host, port
}

func TestRelayHalfClose(t *testing.T) {
	// The server reads the whole request (to EOF), then answers: the
	// relay must pass stdin's end on as a TCP half-close and still copy
	// the answer.
	host, port := serveOnce(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		io.WriteString(c, "got "+string(req))
	})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := RunRelay(ctx, host, port, strings.NewReader("hello"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "got hello" {
		t.Errorf("relayed %q", out.String())
	}
}

func TestRelayServerCloses(t *testing.T) {
	// The server answers and closes while the guest side stays open.
	host, port := serveOnce(t, func(c net.Conn) {
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		io.WriteString(c, "bye "+string(buf))
	})
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	go io.WriteString(stdinW, "hello")
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- RunRelay(t.Context(), host, port, stdinR, &out) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not return when the server closed")
	}
	if out.String() != "bye hello" {
		t.Errorf("relayed %q", out.String())
	}
}

func TestRelayCancel(t *testing.T) {
	host, port := serveOnce(t, func(c net.Conn) { time.Sleep(10 * time.Second) })
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- RunRelay(ctx, host, port, stdinR, io.Discard) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay ignored cancellation")
	}
}

func TestRelayConnectError(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	if err := RunRelay(t.Context(), "127.0.0.1", port, strings.NewReader(""), io.Discard); err == nil {
		t.Error("no error for a closed port")
	}
}
