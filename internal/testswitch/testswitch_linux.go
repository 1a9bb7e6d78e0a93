package testswitch

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// Link is a veth pair: Near in NearNS, Far in FarNS.
type Link struct {
	// IP is the path of ip(8).
	IP            string
	NearNS, FarNS string
	Near, Far     string
	// FarMAC is the far end's MAC: the chassis ID lldpd announces.
	FarMAC net.HardwareAddr
}

// New makes the pair with the given MTU. The far end is up; the near end
// is left down, as an unconfigured NIC in the deploy ramdisk.
func New(t testing.TB, mtu int) *Link {
	t.Helper()
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "raw sockets and network namespaces need root")
	}
	ip := vmtest.Tool(t, "ip")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	l := &Link{IP: ip, NearNS: vmtest.Netns(t), FarNS: vmtest.Netns(t), Near: "ln" + id, Far: "lf" + id}
	vmtest.Run(t, ip, "link", "add", l.Near, "netns", l.NearNS, "mtu", fmt.Sprint(mtu), "type", "veth",
		"peer", "name", l.Far, "netns", l.FarNS, "mtu", fmt.Sprint(mtu))
	vmtest.Run(t, ip, "-n", l.FarNS, "link", "set", l.Far, "up")
	if err := vmtest.InNetns(l.FarNS, func() error {
		ifi, err := net.InterfaceByName(l.Far)
		if err == nil {
			l.FarMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// InNear runs fn on a thread inside the near namespace: sockets it opens
// are the machine's.
func (l *Link) InNear(fn func() error) error { return vmtest.InNetns(l.NearNS, fn) }

// InFar runs fn on a thread inside the far namespace.
func (l *Link) InFar(fn func() error) error { return vmtest.InNetns(l.FarNS, fn) }

// Announce is what lldpd says about the switch and its port.
type Announce struct {
	SystemName        string
	SystemDescription string
	// PortID is sent as a locally assigned port ID ("Ethernet1/7").
	PortID          string
	PortDescription string
	// MgmtAddress is the management address announced ("192.0.2.10").
	MgmtAddress string
	// PVID is the port's untagged VLAN; 0: not announced.
	PVID int
	// VLANs are announced with their names.
	VLANs []VLAN
}

// VLAN is one VLAN on the port.
type VLAN struct {
	ID   int
	Name string
}

// StartLLDPD runs lldpd on the far end, announcing a every second, until
// the test ends.
func (l *Link) StartLLDPD(t testing.TB, a Announce) {
	t.Helper()
	StartLLDPD(t, l.IP, l.FarNS, l.Far, a)
}

// StartLLDPD runs lldpd in the network namespace ns (ip is ip(8)'s path)
// on the interface iface only, which may be a bridge, announcing a every
// second, until the test ends. VLANs go out as lldpd custom TLVs in the
// 802.1 OUI, the bytes a switch sends: lldpd reports VLANs only from
// 802.1Q sub-interfaces, which not every test kernel has.
func StartLLDPD(t testing.TB, ip, ns, iface string, a Announce) {
	t.Helper()
	lldpd := vmtest.Tool(t, "lldpd")
	// lldpd reads its configuration through lldpcli, which talks to the
	// control socket as lldpd's unprivileged user: both live in a
	// directory that user can reach.
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := "configure ports " + iface + " lldp "
	conf := []string{
		"configure system hostname " + quote(a.SystemName),
		"configure lldp tx-interval 1",
		port + "portidsubtype local " + quote(a.PortID),
		port + "portdescription " + quote(a.PortDescription),
	}
	if a.PVID != 0 {
		conf = append(conf, port+"custom-tlv add oui 00,80,c2 subtype 1 oui-info "+octets([]byte{byte(a.PVID >> 8), byte(a.PVID)}))
	}
	for _, v := range a.VLANs {
		info := append([]byte{byte(v.ID >> 8), byte(v.ID), byte(len(v.Name))}, v.Name...)
		conf = append(conf, port+"custom-tlv add oui 00,80,c2 subtype 3 oui-info "+octets(info))
	}
	confFile := filepath.Join(dir, "lldpd.conf")
	if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log bytes.Buffer
	cmd := exec.Command(ip, "netns", "exec", ns, lldpd, "-d", "-d", "-k",
		"-u", filepath.Join(dir, "ctl"), "-p", filepath.Join(dir, "pid"), "-O", confFile,
		"-I", iface, "-m", a.MgmtAddress, "-S", a.SystemDescription)
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
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
			mu.Lock()
			t.Logf("lldpd:\n%s", log.String())
			mu.Unlock()
		}
	})
}

// quote makes s one lldpcli argument.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// octets writes b as lldpcli's comma-separated hex bytes.
func octets(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ",")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
