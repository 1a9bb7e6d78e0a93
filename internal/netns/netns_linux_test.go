package netns

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNamespace: a namespace made by Add has its loopback up and nothing
// else; a listener opened by Do is there and not on the host; Dialer
// reaches it; Delete removes the namespace.
func TestNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but network namespaces need root")
		}
		t.Skip("network namespaces need root")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	name, err := Add(ctx, "rivet-test-netns-")
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	defer func() {
		if !deleted {
			Delete(name)
		}
	}()
	if !strings.HasPrefix(name, "rivet-test-netns-") || len(name) != len("rivet-test-netns-")+8 {
		t.Errorf("name %q", name)
	}
	out, err := exec.Command("ip", "-n", name, "-o", "link", "show").CombinedOutput()
	if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "lo:") ||
		!strings.Contains(string(out), "UP") {
		t.Fatalf("links in %s (want only lo, up): %v\n%s", name, err, out)
	}
	var ln net.Listener
	if err := Do(name, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("inside\n"))
			c.Close()
		}
	}()
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		// Something of the host's may listen on the same port: only our
		// greeting would mean the namespace leaked.
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		c.Close()
		if string(buf[:n]) == "inside\n" {
			t.Error("the namespace's listener answered on the host's loopback")
		}
	}
	c, err := Dialer(name)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	c.Close()
	if string(buf[:n]) != "inside\n" {
		t.Errorf("read %q through the dialer", buf[:n])
	}
	if err := Do("rivet-test-no-such-netns", func() error { return nil }); err == nil {
		t.Error("Do in a namespace that does not exist succeeded")
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	deleted = true
	if _, err := os.Stat(Dir + "/" + name); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", name, err)
	}
}
