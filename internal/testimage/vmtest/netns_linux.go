package vmtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/internal/netns"
)

// Netns makes a network namespace with a name unique to this test run
// ("rivet-test-<random>") and deletes it when the test ends. Tests put
// bridges, taps and addresses in it, so that nothing they send leaves it.
func Netns(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "network namespaces need root")
	}
	ip := Tool(t, "ip")
	b := make([]byte, 4)
	rand.Read(b)
	ns := "rivet-test-" + hex.EncodeToString(b)
	Run(t, ip, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	return ns
}

// Run runs a program and returns its output; a failure fails the test.
func Run(t testing.TB, prog string, args ...string) string {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InNetns runs fn on an OS thread that has entered the named namespace:
// sockets fn opens stay in that namespace (netns.Do).
func InNetns(ns string, fn func() error) error { return netns.Do(ns, fn) }

// NetnsDialer dials from inside the named namespace, for an http.Client
// that reaches addresses there (netns.Dialer).
func NetnsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return netns.Dialer(ns)
}
