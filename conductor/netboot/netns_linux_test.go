package netboot

// The real tests: the boot services run in their own network namespace
// (a child process under "ip netns exec", as a conductor on a provisioning
// network would), the clients in a second namespace joined by a veth
// pair, so every packet stays inside namespaces this test creates. The
// clients are real: insomniacslk's nclient4 and pin/tftp's client in this
// process (on a thread moved into the client namespace), and Debian's
// udhcpc and tftp-hpa when installed.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/vishvananda/netns"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// serverEnv carries the helper server's configuration (JSON).
const serverEnv = "RIVET_NETBOOT_TEST_SERVER"

type serverConfig struct {
	Mode       string            `json:"mode"`
	Interface  string            `json:"iface"`
	RangeStart string            `json:"range_start,omitempty"`
	RangeEnd   string            `json:"range_end,omitempty"`
	Router     string            `json:"router,omitempty"`
	DNS        string            `json:"dns,omitempty"`
	IPXEDir    string            `json:"ipxe_dir"`
	HTTPURL    string            `json:"http_url"`
	Nodes      map[string]string `json:"nodes"`
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(serverEnv); cfg != "" {
		os.Exit(runTestServer(cfg))
	}
	os.Exit(m.Run())
}

// runTestServer is the helper process: the boot services with a fixed
// node table, until SIGTERM. It prints READY once its sockets are open.
func runTestServer(raw string) int {
	var sc serverConfig
	if err := json.Unmarshal([]byte(raw), &sc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	nodes := fakeNodes{}
	for mac, st := range sc.Nodes {
		nodes[mac] = statemachine.State(st)
	}
	cfg := Config{Interface: sc.Interface, HTTPURL: sc.HTTPURL, Mode: DHCPMode(sc.Mode), IPXEDir: sc.IPXEDir, Nodes: nodes}
	if sc.RangeStart != "" {
		cfg.RangeStart, cfg.RangeEnd = net.ParseIP(sc.RangeStart), net.ParseIP(sc.RangeEnd)
		cfg.Router, cfg.DNS = net.ParseIP(sc.Router), []net.IP{net.ParseIP(sc.DNS)}
	}
	s, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	l, err := s.Listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("READY")
	if err := s.Serve(ctx, l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testNet is a server and a client namespace joined by a veth pair:
// 192.0.2.1/24 on the server side.
type testNet struct {
	serverNS, clientNS string
	serverIf, clientIf string
}

var serverIP = net.IPv4(192, 0, 2, 1)

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "network namespaces need root")
	}
	ip := vmtest.Tool(t, "ip")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	n := &testNet{serverNS: "rivet-nb-" + id + "-s", clientNS: "rivet-nb-" + id + "-c",
		serverIf: "nbs" + id, clientIf: "nbc" + id}
	run(t, ip, "netns", "add", n.serverNS)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", n.serverNS).Run() })
	run(t, ip, "netns", "add", n.clientNS)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", n.clientNS).Run() })
	run(t, ip, "link", "add", n.serverIf, "netns", n.serverNS, "type", "veth", "peer", "name", n.clientIf, "netns", n.clientNS)
	run(t, ip, "-n", n.serverNS, "addr", "add", "192.0.2.1/24", "dev", n.serverIf)
	for _, c := range [][]string{{n.serverNS, n.serverIf}, {n.serverNS, "lo"}, {n.clientNS, n.clientIf}, {n.clientNS, "lo"}} {
		run(t, ip, "-n", c[0], "link", "set", c[1], "up")
	}
	return n
}

// startServer runs the boot services in the server namespace and returns
// a function giving their log so far.
func (n *testNet) startServer(t *testing.T, sc serverConfig) func() string {
	t.Helper()
	sc.Interface = n.serverIf
	raw, _ := json.Marshal(sc)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", n.serverNS, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+string(raw), "GORACE=atexit_sleep_ms=0")
	var logMu sync.Mutex
	var logBuf bytes.Buffer
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logBuf.Write(p)
	})
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "READY"
		ready <- ok
		_, _ = io.Copy(io.Discard, stdout)
	}()
	logs := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logBuf.String()
	}
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("boot services did not start:\n%s", logs())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("boot services not ready after 60 s:\n%s", logs())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("boot services log:\n%s", logs())
		}
	})
	return logs
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// inClientNS runs fn on an OS thread moved into the client namespace; the
// thread is never returned to the scheduler (it ends with fn).
func (n *testNet) inClientNS(t *testing.T, fn func() error) error {
	t.Helper()
	h, err := netns.GetFromName(n.clientNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread dies with this goroutine
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

var (
	deployingMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x10, 0x00, 0x01}
	cleaningMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x10, 0x00, 0x02}
	activeMAC    = net.HardwareAddr{0x52, 0x54, 0x00, 0x10, 0x00, 0x03}
	unknownMAC   = net.HardwareAddr{0x52, 0x54, 0x00, 0x10, 0x00, 0x99}
)

func nodeTable() map[string]string {
	return map[string]string{
		deployingMAC.String(): string(statemachine.DeployWait),
		cleaningMAC.String():  string(statemachine.Cleaning),
		activeMAC.String():    string(statemachine.Active),
	}
}

// client kinds: what a firmware sends.
var (
	biosPXE = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}
	uefiPXE = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}
	uefiHTTP = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}
	ipxeClient = append([]dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)}, uefiPXE...)
)

// discover sends a DISCOVER from mac and returns the first offer (an
// error when none comes).
func (n *testNet) discover(t *testing.T, mac net.HardwareAddr, mods []dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	var offer *dhcpv4.DHCPv4
	err := n.inClientNS(t, func() error {
		c, err := nclient4.New(n.clientIf, nclient4.WithHWAddr(mac), nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		offer, err = c.DiscoverOffer(ctx, mods...)
		return err
	})
	return offer, err
}

// lease runs the whole DISCOVER/OFFER/REQUEST/ACK exchange.
func (n *testNet) lease(t *testing.T, mac net.HardwareAddr, mods []dhcpv4.Modifier) (*nclient4.Lease, error) {
	var lease *nclient4.Lease
	err := n.inClientNS(t, func() error {
		c, err := nclient4.New(n.clientIf, nclient4.WithHWAddr(mac), nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lease, err = c.Request(ctx, mods...)
		return err
	})
	return lease, err
}

func TestProxyDHCPAndTFTPInNetns(t *testing.T) {
	n := newTestNet(t)
	dir := ipxeDir(t)
	logs := n.startServer(t, serverConfig{Mode: "proxy", IPXEDir: dir, HTTPURL: "http://192.0.2.1:6385", Nodes: nodeTable()})

	for _, tc := range []struct {
		name  string
		mods  []dhcpv4.Modifier
		file  string
		class string
	}{
		{"BIOS", biosPXE, "undionly.kpxe", "PXEClient"},
		{"UEFI", uefiPXE, "snponly.efi", "PXEClient"},
		{"UEFI HTTP", uefiHTTP, "http://192.0.2.1:6385/boot/firmware/snponly.efi", "HTTPClient"},
		{"iPXE", ipxeClient, "http://192.0.2.1:6385/boot/" + deployingMAC.String() + ".ipxe", "PXEClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offer, err := n.discover(t, deployingMAC, tc.mods)
			if err != nil {
				t.Fatalf("no proxy offer: %v", err)
			}
			if !offer.YourIPAddr.IsUnspecified() {
				t.Errorf("proxy offer carries address %v", offer.YourIPAddr)
			}
			if got := offer.BootFileNameOption(); got != tc.file {
				t.Errorf("boot file %q, want %q", got, tc.file)
			}
			if !offer.ServerIPAddr.Equal(serverIP) || !offer.ServerIdentifier().Equal(serverIP) {
				t.Errorf("next-server %v, server id %v", offer.ServerIPAddr, offer.ServerIdentifier())
			}
			if offer.ClassIdentifier() != tc.class {
				t.Errorf("class %q, want %q", offer.ClassIdentifier(), tc.class)
			}
		})
	}

	t.Run("IgnoredClients", func(t *testing.T) {
		for name, mac := range map[string]net.HardwareAddr{"unknown MAC": unknownMAC, "active node": activeMAC} {
			if offer, err := n.discover(t, mac, uefiPXE); err == nil {
				t.Errorf("%s got an offer: %v", name, offer.Summary())
			}
		}
		for _, line := range strings.Split(logs(), "\n") {
			if strings.Contains(line, "proxy boot answer") && (strings.Contains(line, unknownMAC.String()) || strings.Contains(line, activeMAC.String())) {
				t.Errorf("the server answered an ignored client: %s", line)
			}
		}
	})

	// The client gets its address from "another" server: configure it.
	run(t, "ip", "-n", n.clientNS, "addr", "add", "192.0.2.50/24", "dev", n.clientIf)

	t.Run("PXEPort4011", func(t *testing.T) {
		var ack *dhcpv4.DHCPv4
		err := n.inClientNS(t, func() error {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 50)})
			if err != nil {
				return err
			}
			defer conn.Close()
			req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithHwAddr(deployingMAC), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50))}, uefiPXE...)...)
			if err != nil {
				return err
			}
			if _, err := conn.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: serverIP, Port: 4011}); err != nil {
				return err
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			nr, err := conn.Read(buf)
			if err != nil {
				return err
			}
			ack, err = dhcpv4.FromBytes(buf[:nr])
			return err
		})
		if err != nil {
			t.Fatalf("no answer on port 4011: %v", err)
		}
		if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileNameOption() != "snponly.efi" {
			t.Fatalf("port 4011 answer: %s", ack.Summary())
		}
	})

	t.Run("TFTP", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(dir, DefaultUEFIFile))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		var refused []string
		var writeErr error
		err = n.inClientNS(t, func() error {
			c, err := tftp.NewClient("192.0.2.1:69")
			if err != nil {
				return err
			}
			c.SetTimeout(2 * time.Second)
			c.SetRetries(2)
			wt, err := c.Receive(DefaultUEFIFile, "octet")
			if err != nil {
				return err
			}
			if _, err := wt.WriteTo(&got); err != nil {
				return err
			}
			for _, p := range []string{"../secret", "/../secret", "escape.efi", "missing.efi", "."} {
				if wt, err := c.Receive(p, "octet"); err == nil {
					var b bytes.Buffer
					if _, err := wt.WriteTo(&b); err == nil {
						return fmt.Errorf("TFTP served %q (%d bytes)", p, b.Len())
					}
				}
				refused = append(refused, p)
			}
			rf, err := c.Send("upload.bin", "octet")
			if err == nil {
				_, err = rf.ReadFrom(strings.NewReader("not allowed"))
			}
			writeErr = err
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("TFTP served %d bytes of snponly.efi, want %d", got.Len(), len(want))
		}
		if len(refused) != 5 {
			t.Fatalf("refused only %v", refused)
		}
		if writeErr == nil {
			t.Fatal("TFTP write accepted")
		}
		if _, err := os.Stat(filepath.Join(dir, "upload.bin")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a TFTP write created a file: %v", err)
		}
	})

	t.Run("TFTPWithTftpHpa", func(t *testing.T) {
		if _, err := exec.LookPath("tftp"); err != nil {
			vmtest.Unavailable(t, "tftp-hpa client not installed (make deps): %v", err)
		}
		out := filepath.Join(t.TempDir(), "got")
		cmd := exec.Command("ip", "netns", "exec", n.clientNS, "tftp", "-m", "binary", "192.0.2.1", "-c", "get", DefaultBIOSFile, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tftp get: %v\n%s", err, b)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(filepath.Join(dir, DefaultBIOSFile))
		if !bytes.Equal(got, want) {
			t.Fatalf("tftp-hpa got %d bytes, want %d", len(got), len(want))
		}
		bad := filepath.Join(t.TempDir(), "bad")
		b, _ := exec.Command("ip", "netns", "exec", n.clientNS, "tftp", "192.0.2.1", "-c", "get", "../secret", bad).CombinedOutput()
		if data, _ := os.ReadFile(bad); strings.Contains(string(data), "outside") {
			t.Fatalf("tftp-hpa fetched a file outside the directory: %s", b)
		}
	})
}

func TestFullDHCPInNetns(t *testing.T) {
	n := newTestNet(t)
	nodes := nodeTable()
	// udhcpc uses the interface's own MAC: enroll it as a cleaning node.
	ifaceMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x10, 0x00, 0x04}
	run(t, "ip", "-n", n.clientNS, "link", "set", n.clientIf, "address", ifaceMAC.String())
	nodes[ifaceMAC.String()] = string(statemachine.CleanWait)
	logs := n.startServer(t, serverConfig{Mode: "full", IPXEDir: ipxeDir(t), HTTPURL: "http://192.0.2.1:6385",
		RangeStart: "192.0.2.100", RangeEnd: "192.0.2.110", Router: "192.0.2.254", DNS: "192.0.2.53", Nodes: nodes})

	lease, err := n.lease(t, deployingMAC, uefiPXE)
	if err != nil {
		t.Fatalf("no lease for a deploying node's UEFI PXE client: %v", err)
	}
	ack := lease.ACK
	if ip := ack.YourIPAddr.To4(); ip == nil || ip[3] < 100 || ip[3] > 110 || !ack.YourIPAddr.Mask(net.CIDRMask(24, 32)).Equal(net.IPv4(192, 0, 2, 0)) {
		t.Fatalf("leased %v, want an address of 192.0.2.100-110", ack.YourIPAddr)
	}
	if ack.BootFileNameOption() != "snponly.efi" || !ack.ServerIPAddr.Equal(serverIP) {
		t.Errorf("boot file %q from %v", ack.BootFileNameOption(), ack.ServerIPAddr)
	}
	if !bytes.Equal(ack.SubnetMask(), net.CIDRMask(24, 32)) || len(ack.Router()) != 1 || !ack.Router()[0].Equal(net.IPv4(192, 0, 2, 254)) ||
		len(ack.DNS()) != 1 || !ack.DNS()[0].Equal(net.IPv4(192, 0, 2, 53)) {
		t.Errorf("lease options: mask %v router %v dns %v", ack.SubnetMask(), ack.Router(), ack.DNS())
	}

	// The deploy ramdisk's DHCP client: an address, no boot file.
	plain, err := n.lease(t, cleaningMAC, nil)
	if err != nil {
		t.Fatalf("no lease for the ramdisk's DHCP client: %v", err)
	}
	if plain.ACK.BootFileNameOption() != "" || plain.ACK.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Errorf("plain client: %s", plain.ACK.Summary())
	}

	for name, mac := range map[string]net.HardwareAddr{"unknown MAC": unknownMAC, "active node": activeMAC} {
		if offer, err := n.discover(t, mac, biosPXE); err == nil {
			t.Errorf("%s got an offer: %s", name, offer.Summary())
		}
	}
	for _, line := range strings.Split(logs(), "\n") {
		if strings.Contains(line, "dhcp: lease") && (strings.Contains(line, unknownMAC.String()) || strings.Contains(line, activeMAC.String())) {
			t.Errorf("a lease for an ignored client: %s", line)
		}
	}

	t.Run("udhcpc", func(t *testing.T) {
		p, err := exec.LookPath("udhcpc")
		if err != nil {
			vmtest.Unavailable(t, "udhcpc not installed (make deps): %v", err)
		}
		out, err := exec.Command("ip", "netns", "exec", n.clientNS, p, "-i", n.clientIf, "-n", "-q", "-f",
			"-t", "3", "-T", "1", "-s", "/bin/true").CombinedOutput()
		if err != nil {
			t.Fatalf("udhcpc: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "lease of 192.0.2.1") {
			t.Fatalf("udhcpc got no lease from the range:\n%s", out)
		}
		if !strings.Contains(logs(), "mac="+ifaceMAC.String()) {
			t.Fatalf("the server did not log udhcpc's lease")
		}
	})
}
