package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/netboot"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags([]string{"--state-dir", "/tmp/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:6385" || o.db != filepath.Join("/tmp/x", "rivet.db") ||
		o.heartbeatTimeout != 300*time.Second || o.callbackTimeout != 1800*time.Second {
		t.Fatalf("defaults = %+v", o)
	}
	if _, err := parseFlags([]string{"extra"}, io.Discard); err == nil {
		t.Fatal("stray argument accepted")
	}
}

func TestRelaySubcommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "echo: "+line)
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, []string{"relay", host, port}, strings.NewReader("ping\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "echo: ping\n" {
		t.Fatalf("relay output %q", out.String())
	}
}

func TestServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--state-dir", dir, "--log-level", "warn"},
			strings.NewReader(""), io.Discard, io.Discard)
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("conductor did not stop on cancel")
	}
}

func TestNetbootFlags(t *testing.T) {
	parse := func(args ...string) (*netboot.Config, error) {
		t.Helper()
		o, err := parseFlags(append([]string{"--state-dir", "/tmp/x"}, args...), io.Discard)
		if err != nil {
			return nil, err
		}
		return o.netboot.config()
	}
	if c, err := parse(); err != nil || c != nil {
		t.Fatalf("no --boot-interface: %v, %v; want off", c, err)
	}
	c, err := parse("--boot-interface", "br0")
	if err != nil || c.Mode != netboot.ProxyDHCP || c.Interface != "br0" || c.IPXEDir != netboot.DefaultIPXEDir {
		t.Fatalf("proxy default: %+v, %v", c, err)
	}
	c, err = parse("--boot-interface", "br0", "--dhcp-mode", "full", "--dhcp-range", "10.9.0.100,10.9.0.200",
		"--dhcp-router", "10.9.0.1", "--dhcp-dns", "10.9.0.2,10.9.0.3", "--boot-server-address", "10.9.0.1")
	if err != nil || c.Mode != netboot.FullDHCP || c.RangeStart.String() != "10.9.0.100" || c.RangeEnd.String() != "10.9.0.200" ||
		c.Router.String() != "10.9.0.1" || len(c.DNS) != 2 || c.ServerIP.String() != "10.9.0.1" {
		t.Fatalf("full: %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"--dhcp-mode", "full", "--dhcp-range", "10.9.0.100,10.9.0.200"},
		{"--boot-interface", "br0", "--dhcp-mode", "relay"},
		{"--boot-interface", "br0", "--dhcp-mode", "full"},
		{"--boot-interface", "br0", "--dhcp-mode", "full", "--dhcp-range", "10.9.0.100"},
		{"--boot-interface", "br0", "--dhcp-mode", "full", "--dhcp-range", "10.9.0.100,fe80::1"},
		{"--boot-interface", "br0", "--dhcp-range", "10.9.0.100,10.9.0.200"},
		{"--boot-interface", "br0", "--boot-server-address", "nope"},
	} {
		if c, err := parse(bad...); err == nil {
			t.Errorf("%v accepted: %+v", bad, c)
		}
	}
}
