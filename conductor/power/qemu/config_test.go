package qemu

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	exe := selfExe(t)
	d, err := New(Config{StateDir: t.TempDir() + "/sub", Relay: []string{exe, "relay"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.Binary != DefaultBinary || d.guestHost.String() != DefaultGuestHost || d.relay[0] != exe || d.log == nil {
		t.Errorf("defaults: %+v", d.cfg)
	}
	for name, cfg := range map[string]Config{
		"no state dir":     {Relay: []string{exe}},
		"no relay":         {StateDir: t.TempDir()},
		"relay with comma": {StateDir: t.TempDir(), Relay: []string{exe, "a,b"}},
		"relay with space": {StateDir: t.TempDir(), Relay: []string{exe, "a b"}},
		"relay not found":  {StateDir: t.TempDir(), Relay: []string{"/no/such/relay"}},
		"guest host slirp": {StateDir: t.TempDir(), Relay: []string{exe}, GuestHost: "10.0.2.2"},
		"guest host off":   {StateDir: t.TempDir(), Relay: []string{exe}, GuestHost: "192.168.1.1"},
		"guest host name":  {StateDir: t.TempDir(), Relay: []string{exe}, GuestHost: "conductor"},
		"half OVMF":        {StateDir: t.TempDir(), Relay: []string{exe}, OVMFCode: "/x"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(Config{StateDir: t.TempDir(), Relay: []string{"sh"}}); err != nil {
		t.Errorf("relay on PATH: %v", err)
	}
}

func TestCheckRelayResolvesPath(t *testing.T) {
	r, err := checkRelay([]string{"sh", "-c"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r[0], "/") || r[1] != "-c" {
		t.Errorf("relay = %q", r)
	}
}
