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
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/internal/testswitch"
)

// testLink is testswitch's veth pair with what these tests look at.
type testLink struct{ *testswitch.Link }

func newTestLink(t *testing.T, mtu int) *testLink { return &testLink{testswitch.New(t, mtu)} }

// linkState is the near end as `ip -d -s -j link show` reports it.
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
	out := vmtest.Run(t, l.IP, "-n", l.NearNS, "-d", "-s", "-j", "link", "show", "dev", l.Near)
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
	if err := l.InNear(func() error {
		res = lst.Listen(ctx, []string{l.Near})
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
	l.StartLLDPD(t, testswitch.Announce{SystemName: "sw-rivet-01", SystemDescription: "Rivet test switch",
		PortID: "Ethernet1/7", PortDescription: "uplink to node-17", MgmtAddress: "192.0.2.10",
		PVID: 100, VLANs: []testswitch.VLAN{{ID: 100, Name: "vlan100"}}})
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
		{"chassis id (MAC)", 1, []byte{4}, l.FarMAC},
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

// sender writes raw frames from the far end.
func (l *testLink) sender(t *testing.T) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	if err := l.InFar(func() error {
		ifi, err := net.InterfaceByName(l.Far)
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
	vmtest.Run(t, l.IP, "-n", l.NearNS, "link", "set", l.Near, "up")
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
