package netboot

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/iana"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/netboot/internal/dhcpd"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// fakeNodes maps MACs to provision states.
type fakeNodes map[string]statemachine.State

func (f fakeNodes) NodeByMACs(_ context.Context, macs []string) (*store.Node, error) {
	for _, m := range macs {
		if st, ok := f[m]; ok {
			return &store.Node{UUID: "node-" + m, ProvisionState: st}, nil
		}
	}
	return nil, errdefs.ErrNotFound
}

// ipxeDir makes a stand-in for Debian's /usr/lib/ipxe: the two default
// binaries, a file outside and a symlink to it.
func ipxeDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "ipxe")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(dir, DefaultBIOSFile): strings.Repeat("BIOS-iPXE ", 20000),
		filepath.Join(dir, DefaultUEFIFile): strings.Repeat("UEFI-iPXE ", 30000),
		filepath.Join(base, "secret"):       "outside the iPXE directory",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../secret", filepath.Join(dir, "escape.efi")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newService(t *testing.T, nodes Nodes) *Service {
	t.Helper()
	s, err := New(Config{Interface: "lo", ServerIP: net.IPv4(192, 0, 2, 1), Netmask: net.CIDRMask(24, 32),
		HTTPURL: "http://192.0.2.1:6385/", IPXEDir: ipxeDir(t), Nodes: nodes, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.firmware.Close() })
	return s
}

func TestDecide(t *testing.T) {
	const mac = "52:54:00:00:00:01"
	hw, _ := net.ParseMAC(mac)
	s := newService(t, fakeNodes{mac: statemachine.DeployWait, "52:54:00:00:00:02": statemachine.Active})
	pxe := "PXEClient:Arch:00000:UNDI:002001"
	for _, tc := range []struct {
		name string
		r    dhcpd.Request
		want dhcpd.Boot
		ok   bool
	}{
		{"BIOS", dhcpd.Request{MAC: hw, Archs: []iana.Arch{iana.INTEL_X86PC}, VendorClass: pxe}, dhcpd.Boot{File: "undionly.kpxe"}, true},
		{"PXE without option 93", dhcpd.Request{MAC: hw, VendorClass: pxe}, dhcpd.Boot{File: "undionly.kpxe"}, true},
		{"UEFI x64", dhcpd.Request{MAC: hw, Archs: []iana.Arch{iana.EFI_X86_64}, VendorClass: pxe}, dhcpd.Boot{File: "snponly.efi"}, true},
		{"UEFI BC", dhcpd.Request{MAC: hw, Archs: []iana.Arch{iana.EFI_BC}, VendorClass: pxe}, dhcpd.Boot{File: "snponly.efi"}, true},
		{"UEFI HTTP", dhcpd.Request{MAC: hw, Archs: []iana.Arch{iana.EFI_X86_64_HTTP}, VendorClass: "HTTPClient:Arch:00016:UNDI:003001"},
			dhcpd.Boot{File: "http://192.0.2.1:6385/boot/firmware/snponly.efi", HTTP: true}, true},
		{"iPXE", dhcpd.Request{MAC: hw, Archs: []iana.Arch{iana.EFI_X86_64}, VendorClass: pxe, UserClasses: []string{"iPXE"}},
			dhcpd.Boot{File: "http://192.0.2.1:6385/boot/52:54:00:00:00:01.ipxe"}, true},
		{"plain DHCP client", dhcpd.Request{MAC: hw}, dhcpd.Boot{}, true},
		{"ARM64 UEFI", dhcpd.Request{MAC: hw, Archs: []iana.Arch{iana.EFI_ARM64}, VendorClass: pxe}, dhcpd.Boot{}, false},
		{"active node", dhcpd.Request{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}, VendorClass: pxe}, dhcpd.Boot{}, false},
		{"unknown MAC", dhcpd.Request{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}, VendorClass: pxe}, dhcpd.Boot{}, false},
	} {
		got, ok := s.decide(context.Background(), tc.r)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: decide = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNeedsNetworkBoot(t *testing.T) {
	for _, st := range statemachine.States() {
		want := statemachine.LookupAllowed[st] || st == statemachine.Servicing || st == statemachine.ServiceWait
		if got := NeedsNetworkBoot(st); got != want {
			t.Errorf("NeedsNetworkBoot(%s) = %v, want %v", st, got, want)
		}
	}
}

func TestNewChecks(t *testing.T) {
	dir := ipxeDir(t)
	good := Config{Interface: "lo", ServerIP: net.IPv4(192, 0, 2, 1), Netmask: net.CIDRMask(24, 32),
		HTTPURL: "http://192.0.2.1:6385", IPXEDir: dir, Nodes: fakeNodes{}, Logger: quietLogger()}
	for name, mutate := range map[string]func(*Config){
		"no nodes":         func(c *Config) { c.Nodes = nil },
		"no interface":     func(c *Config) { c.Interface = "" },
		"bad URL":          func(c *Config) { c.HTTPURL = "ftp://x" },
		"missing BIOS":     func(c *Config) { c.BIOSFile = "pxelinux.0" },
		"escaping UEFI":    func(c *Config) { c.UEFIFile = "escape.efi" },
		"full, no range":   func(c *Config) { c.Mode = FullDHCP },
		"unknown mode":     func(c *Config) { c.Mode = "relay" },
		"missing ipxe dir": func(c *Config) { c.IPXEDir = filepath.Join(dir, "nope") },
	} {
		cfg := good
		mutate(&cfg)
		if s, err := New(cfg); err == nil {
			s.firmware.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDebianIPXEPackage(t *testing.T) {
	if _, err := os.Stat(filepath.Join(DefaultIPXEDir, DefaultUEFIFile)); err != nil {
		t.Skipf("Debian's ipxe package is not installed (make deps): %v", err)
	}
	s, err := New(Config{Interface: "lo", ServerIP: net.IPv4(127, 0, 0, 1), Netmask: net.CIDRMask(8, 32),
		HTTPURL: "http://127.0.0.1:6385", Nodes: fakeNodes{}, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("the default configuration on Debian's ipxe package: %v", err)
	}
	s.firmware.Close()
}

func TestFirmwareHTTP(t *testing.T) {
	dir := ipxeDir(t)
	f, err := NewFirmware(dir, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := httptest.NewServer(http.StripPrefix("/boot/firmware", f))
	defer srv.Close()
	want, _ := os.ReadFile(filepath.Join(dir, DefaultUEFIFile))
	resp, err := http.Get(srv.URL + "/boot/firmware/snponly.efi")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(want) {
		t.Fatalf("GET snponly.efi = %d, %d bytes", resp.StatusCode, len(got))
	}
	for path, status := range map[string]int{
		"/boot/firmware/escape.efi":        http.StatusForbidden,
		"/boot/firmware/missing.efi":       http.StatusNotFound,
		"/boot/firmware/%2e%2e/secret":     http.StatusForbidden,
		"/boot/firmware/..%2fsecret":       http.StatusForbidden,
		"/boot/firmware/sub/../../secret":  http.StatusForbidden,
		"/boot/firmware/undionly.kpxe?x=1": http.StatusOK,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, status)
		}
		if strings.Contains(string(body), "outside the iPXE directory") {
			t.Errorf("GET %s served the file outside the directory", path)
		}
	}
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/boot/firmware/snponly.efi", strings.NewReader("x"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT = %d, want 405", resp.StatusCode)
	}
}
