package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 keeps named namespaces.
const Dir = "/run/netns"

// Add creates a network namespace named prefix + 8 random hex digits with
// ip netns add (iproute2), brings its loopback up, and returns its name.
func Add(ctx context.Context, prefix string) (string, error) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return "", fmt.Errorf("netns: ip (iproute2): %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if out, err := exec.CommandContext(ctx, ip, "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("netns: ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, ip, "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = Delete(name)
		return "", fmt.Errorf("netns: %s: loopback up: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return name, nil
}

// Delete removes the named namespace (ip netns delete). Interfaces that
// live only in it (bridges, veths, taps whose process is gone) go with it.
func Delete(name string) error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("netns: ip (iproute2): %w", err)
	}
	if out, err := exec.Command(ip, "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("netns: ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs fn on an OS thread that has entered the named namespace:
// sockets fn opens, and processes it starts, are in that namespace (the
// goroutines fn starts are not: they run on other threads).
func Do(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer self.Close()
	target, err := os.Open(filepath.Join(Dir, name))
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: enter %s: %w", name, os.NewSyscallError("setns", err))
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread cannot go back: end it with the goroutine
		// (UnlockOSThread is skipped) rather than let it serve others.
		runtime.Goexit()
	}
	return ferr
}

// Dialer returns a dial function that connects from inside the named
// namespace, for an http.Transport that reaches addresses there.
func Dialer(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(name, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
