package lldp

// The real tests: a veth pair between two network namespaces the test
// creates, the near end standing for the machine's NIC and the far end for
// a switch port. On the far end either Debian's lldpd sends real LLDP, or
// the test itself writes hostile frames through a raw socket; on the near
// end the Listener receives through the kernel's AF_PACKET socket, BPF
// filter and promiscuous membership. Every frame stays inside the two
// namespaces.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// testLink is a veth pair: near (in nearNS) and far (in farNS).
type testLink struct {
	ip            string
	nearNS, farNS string
	near, far     string
	farMAC        net.HardwareAddr
}

// newTestLink makes the pair with the given MTU; the far end is up, the
// near end is left down, as an unconfigured NIC in the ramdisk.
func newTestLink(t *testing.T, mtu int) *testLink {
	t.Helper()
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "raw sockets and network namespaces need root")
	}
	ip := vmtest.Tool(t, "ip")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	l := &testLink{ip: ip, nearNS: vmtest.Netns(t), farNS: vmtest.Netns(t), near: "ln" + id, far: "lf" + id}
	vmtest.Run(t, ip, "link", "add", l.near, "netns", l.nearNS, "mtu", fmt.Sprint(mtu), "type", "veth",
		"peer", "name", l.far, "netns", l.farNS, "mtu", fmt.Sprint(mtu))
	vmtest.Run(t, ip, "-n", l.farNS, "addr", "add", "192.0.2.10/24", "dev", l.far)
	vmtest.Run(t, ip, "-n", l.farNS, "link", "set", l.far, "up")
	if err := vmtest.InNetns(l.farNS, func() error {
		ifi, err := net.InterfaceByName(l.far)
		if err == nil {
			l.farMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// link is the near end as `ip -d -s -j link show` reports it.
type linkState struct {
	Flags       []string `json:"flags"`
	Promiscuity int      `json:"promiscuity"`
	Stats64     struct {
		RX struct {
			Bytes int `json:"bytes"`
		} `json:"rx"`
	} `json:"stats64"`
}

func (l *testLink) nearState(t *testing.T) linkState {
	t.Helper()
	var st []linkState
	out := vmtest.Run(t, l.ip, "-n", l.nearNS, "-d", "-s", "-j", "link", "show", "dev", l.near)
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	return st[0]
}

func (s linkState) up() bool {
	for _, f := range s.Flags {
		if f == "UP" {
			return true
		}
	}
	return false
}

// listen runs a Listener on the near end, from a thread inside its
// namespace (the sockets are opened there).
func (l *testLink) listen(t *testing.T, ctx context.Context, lst Listener) Result {
	t.Helper()
	var res []Result
	if err := vmtest.InNetns(l.nearNS, func() error {
		res = lst.Listen(ctx, []string{l.near})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// recorder is a slog handler that keeps every message and tells the test
// when the listener starts waiting.
type recorder struct {
	mu      sync.Mutex
	msgs    []string
	waiting chan struct{}
	once    sync.Once
	tb      testing.TB
}

func newRecorder(tb testing.TB) *recorder { return &recorder{waiting: make(chan struct{}), tb: tb} }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	r.tb.Log(line)
	r.mu.Lock()
	r.msgs = append(r.msgs, line)
	r.mu.Unlock()
	if strings.HasPrefix(rec.Message, "LLDP: waiting for a frame") {
		r.once.Do(func() { close(r.waiting) })
	}
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// find returns the value of the first TLV of that type (and, for type 127,
// OUI and subtype, given as the value's first four bytes).
func find(tlvs []TLV, typ uint8, prefix ...byte) ([]byte, bool) {
	for _, x := range tlvs {
		if x.Type == typ && bytes.HasPrefix(x.Value, prefix) {
			return x.Value[len(prefix):], true
		}
	}
	return nil, false
}

// TestListenToLLDPD has Debian's lldpd, on the far end, announce a switch
// (system name and description, port id and description, management
// address, port VLAN and a VLAN name) every second. The near end starts
// down: the listener brings it up, hears lldpd, and afterwards the link is
// down again and not promiscuous.
func TestListenToLLDPD(t *testing.T) {
	l := newTestLink(t, 1500)
	lldpd := vmtest.Tool(t, "lldpd")
	// lldpd runs lldpcli, which reads the configuration and talks to the
	// control socket, as its own unprivileged user: both live in a
	// directory that user can reach.
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "lldpd.conf")
	// No 802.1Q in some kernels (VLAN sub-interfaces are what lldpd
	// reports VLANs from): the port VLAN and the VLAN name go out as
	// lldpd custom TLVs, in the 802.1 OUI, byte for byte what a switch
	// sends.
	err := os.WriteFile(conf, []byte(strings.Join([]string{
		"configure system hostname sw-rivet-01",
		"configure lldp tx-interval 1",
		"configure ports " + l.far + " lldp portidsubtype local Ethernet1/7",
		`configure ports ` + l.far + ` lldp portdescription "uplink to node-17"`,
		"configure ports " + l.far + " lldp custom-tlv add oui 00,80,c2 subtype 1 oui-info 00,64",
		"configure ports " + l.far + " lldp custom-tlv add oui 00,80,c2 subtype 3 oui-info 00,64,07,76,6c,61,6e,31,30,30",
		"",
	}, "\n")), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var lldpdLog bytes.Buffer
	cmd := exec.Command(l.ip, "netns", "exec", l.farNS, lldpd, "-d", "-d", "-k", "-u", filepath.Join(dir, "ctl"),
		"-p", filepath.Join(dir, "pid"), "-O", conf, "-I", l.far, "-m", "192.0.2.10", "-S", "Rivet test switch")
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return lldpdLog.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("lldpd:\n%s", lldpdLog.String())
			logMu.Unlock()
		}
	})
	if l.nearState(t).up() {
		t.Fatal("the near end should start down")
	}

	rec := newRecorder(t)
	res := l.listen(t, t.Context(), Listener{Timeout: 60 * time.Second, Logger: slog.New(rec)})
	if res.Err != nil || res.TLVs == nil {
		t.Fatalf("nothing heard from lldpd: %+v", res)
	}
	for _, x := range res.TLVs {
		t.Logf("TLV %3d %x", x.Type, x.Value)
	}
	checks := []struct {
		what   string
		typ    uint8
		prefix []byte
		want   []byte
	}{
		{"chassis id (MAC)", 1, []byte{4}, l.farMAC},
		{"port id (local)", 2, []byte{7}, []byte("Ethernet1/7")},
		{"port description", 4, nil, []byte("uplink to node-17")},
		{"system name", 5, nil, []byte("sw-rivet-01")},
		{"system description", 6, nil, []byte("Rivet test switch")},
		{"management address", 8, []byte{5, 1}, []byte{192, 0, 2, 10}},
		{"port VLAN id", 127, []byte{0x00, 0x80, 0xc2, 1}, []byte{0x00, 0x64}},
		{"VLAN name", 127, []byte{0x00, 0x80, 0xc2, 3}, append([]byte{0x00, 0x64, 7}, "vlan100"...)},
	}
	for _, c := range checks {
		v, ok := find(res.TLVs, c.typ, c.prefix...)
		if !ok || !bytes.HasPrefix(v, c.want) {
			t.Errorf("%s: %x (found %v), want %x", c.what, v, ok, c.want)
		}
	}
	if last := res.TLVs[len(res.TLVs)-1]; last.Type != TypeEnd {
		t.Errorf("last TLV %+v, want End", last)
	}
	st := l.nearState(t)
	if st.up() || st.Promiscuity != 0 {
		t.Errorf("the near end was not put back: flags %v, promiscuity %d", st.Flags, st.Promiscuity)
	}
	if !rec.contains("interface was down; up while listening") {
		t.Error("bringing the link up was not logged")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// sender writes raw frames from the far end.
func (l *testLink) sender(t *testing.T) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	if err := vmtest.InNetns(l.farNS, func() error {
		ifi, err := net.InterfaceByName(l.far)
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, EtherType, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// hostileRun sends the hostile frames once the listener waits, then the
// switch's frame every 50 ms until the listener is done, and returns what
// it heard.
func (l *testLink) hostileRun(t *testing.T, hostile [][]byte, rec *recorder) Result {
	t.Helper()
	vmtest.Run(t, l.ip, "-n", l.nearNS, "link", "set", l.near, "up")
	out := l.sender(t)
	to := &packet.Addr{HardwareAddr: nearestBridge}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		select {
		case <-rec.waiting:
		case <-ctx.Done():
			sent <- nil
			return
		}
		for _, f := range hostile {
			if _, err := out.WriteTo(f, to); err != nil {
				sent <- fmt.Errorf("send a %d-byte frame: %w", len(f), err)
				return
			}
		}
		for {
			if _, err := out.WriteTo(switchFrame(), to); err != nil {
				sent <- err
				return
			}
			select {
			case <-ctx.Done():
				sent <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	res := l.listen(t, t.Context(), Listener{Timeout: 60 * time.Second, Logger: slog.New(rec)})
	cancel()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	return res
}

// TestOversizedFramesNeverReachTheAgent sends 200 LLDP frames of 12,000
// bytes (the veth carries them: its MTU is 16,000) before a switch's
// frame. They reach the near end, and the socket's BPF filter drops them
// in the kernel: the listener reads no malformed frame at all, and keeps
// the switch's.
func TestOversizedFramesNeverReachTheAgent(t *testing.T) {
	l := newTestLink(t, 16000)
	big := frame(tlv(6, make([]byte, 511)...))
	for len(big) < 12000 {
		big = append(big, tlv(6, make([]byte, 511)...)...)
	}
	hostile := make([][]byte, 200)
	for i := range hostile {
		hostile[i] = big
	}
	rec := newRecorder(t)
	before := l.nearState(t).Stats64.RX.Bytes
	res := l.hostileRun(t, hostile, rec)
	if res.Err != nil || len(res.TLVs) != 11 || string(res.TLVs[4].Value) != "sw-rivet-01" {
		t.Fatalf("%+v", res)
	}
	// The veth may drop some of a burst; enough bytes arrived for at
	// least one oversized frame to have reached the near end's socket.
	got := l.nearState(t).Stats64.RX.Bytes - before
	if got < len(big)+len(switchFrame()) {
		t.Fatalf("only %d bytes reached the near end", got)
	}
	t.Logf("%d bytes reached the near end (%d oversized frames sent)", got, len(hostile))
	if rec.contains("malformed") {
		t.Error("an oversized frame got past the socket filter")
	}
}

// TestMalformedFramesAreDropped floods the near end with frames within
// the size limit that no parser should trust (truncated TLVs, a trailing
// byte, 4,000 TLVs, an empty LLDPDU, and IPv4 claiming to be LLDP at the
// ethertype but not at the protocol): the listener drops them, says so,
// does not panic, and keeps the switch's frame that follows.
func TestMalformedFramesAreDropped(t *testing.T) {
	l := newTestLink(t, 9000)
	many := make([][]byte, 4000)
	for i := range many {
		many[i] = tlv(9)
	}
	set := [][]byte{
		frame(tlv(1, 4, 1), []byte{0xff, 0xff}),
		frame(tlv(1, append([]byte{4}, switchMAC...)...), []byte{0x02}),
		frame(many...),
		frame(),
	}
	var hostile [][]byte
	for range 50 {
		hostile = append(hostile, set...)
	}
	rec := newRecorder(t)
	res := l.hostileRun(t, hostile, rec)
	if res.Err != nil || len(res.TLVs) != 11 || string(res.TLVs[4].Value) != "sw-rivet-01" {
		t.Fatalf("%+v", res)
	}
	if !rec.contains("malformed frame dropped") || !rec.contains("malformed frames dropped") {
		t.Error("the dropped frames were not reported")
	}
}
