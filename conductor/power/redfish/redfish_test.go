package redfish

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/drivertest"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func harness(auth string) func(t *testing.T) drivertest.Harness {
	return func(t *testing.T) drivertest.Harness {
		b := newFakeBMC(t)
		d := New(Config{Timeout: 5 * time.Second})
		di := map[string]any{"redfish_address": b.srv.URL, "redfish_username": b.user,
			"redfish_password": b.password, "redfish_auth_type": auth}
		if auth == "" {
			delete(di, "redfish_auth_type")
		}
		t.Cleanup(func() {
			if n := b.openSessions(); n != 0 {
				t.Errorf("%d Redfish sessions left open", n)
			}
		})
		return drivertest.Harness{
			Driver: d,
			Node:   power.Node{UUID: "9e0a6f3c-8b55-4a8f-9d2c-3f3c1c5f3a10", DriverInfo: di},
			Machine: func() drivertest.Machine {
				on, enabled, target, mode := b.machine()
				m := drivertest.Machine{On: on, Persistent: enabled == "Continuous"}
				for dev, t := range targets {
					if string(t) == target {
						m.BootDevice = dev
					}
				}
				switch mode {
				case "UEFI":
					m.BootMode = power.BootModeUEFI
				case "Legacy":
					m.BootMode = power.BootModeBIOS
				}
				return m
			},
			SetMachinePower: b.setPower,
			InvalidDriverInfo: []map[string]any{
				{},
				{"redfish_address": "ftp://bmc"},
				{"redfish_address": b.srv.URL, "redfish_auth_type": "kerberos"},
				{"redfish_address": b.srv.URL, "redfish_verify_ca": 3},
				{"redfish_address": b.srv.URL, "redfish_verify_ca": "/nonexistent/ca.pem"},
				// A CA file that is no file: read, it would never end.
				{"redfish_address": b.srv.URL, "redfish_verify_ca": "/dev/zero"},
				{"redfish_address": b.srv.URL, "redfish_password": 42},
			},
			Unreachable: power.Node{UUID: "unreachable", DriverInfo: map[string]any{
				"redfish_address": "http://" + closedAddr(t), "redfish_username": "u", "redfish_password": "p"}},
		}
	}
}

func TestConformanceBasicAuth(t *testing.T)   { drivertest.Run(t, harness("basic")) }
func TestConformanceSessionAuth(t *testing.T) { drivertest.Run(t, harness("session")) }
func TestConformanceAutoAuth(t *testing.T)    { drivertest.Run(t, harness("")) }

func TestWrongCredentialsFail(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	for _, auth := range []string{"basic", "session", "auto"} {
		n := power.Node{UUID: "n1", DriverInfo: map[string]any{"redfish_address": b.srv.URL,
			"redfish_username": "admin", "redfish_password": "wrong-password", "redfish_auth_type": auth}}
		_, err := d.PowerState(context.Background(), n)
		if err == nil {
			t.Fatalf("auth %s: wrong password accepted", auth)
		}
		if strings.Contains(err.Error(), "wrong-password") {
			t.Fatalf("auth %s: error leaks the password: %v", auth, err)
		}
		if !strings.Contains(err.Error(), "node n1") {
			t.Errorf("auth %s: error does not name the node: %v", auth, err)
		}
	}
}

func TestSystemIDAndRebootFromOff(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	n := power.Node{UUID: "n1", DriverInfo: map[string]any{"redfish_address": b.srv.URL,
		"redfish_system_id": systemPath, "redfish_username": b.user, "redfish_password": b.password,
		"redfish_auth_type": "basic", "redfish_verify_ca": "false"}}
	if err := d.SetPowerState(context.Background(), n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	resets := append([]string(nil), b.resets...)
	b.mu.Unlock()
	// Ironic powers an off system on for a reboot rather than ForceRestart.
	if len(resets) != 1 || resets[0] != "On" {
		t.Fatalf("resets = %v, want [On]", resets)
	}
	if err := d.SetPowerState(context.Background(), n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	resets = append([]string(nil), b.resets...)
	b.mu.Unlock()
	if len(resets) != 2 || resets[1] != "ForceRestart" {
		t.Fatalf("resets = %v, want [On ForceRestart]", resets)
	}
	n.DriverInfo["redfish_system_id"] = "/redfish/v1/Systems/nope"
	if _, err := d.PowerState(context.Background(), n); err == nil {
		t.Fatal("unknown system id accepted")
	}
}
