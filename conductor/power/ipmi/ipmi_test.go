package ipmi

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/drivertest"
)

// machineHAL is go-ipmi's mock hardware with one change: a soft shutdown
// (Chassis Control 0x05, an ACPI request to the OS) powers the machine
// off, as a well-behaved OS does.
type machineHAL struct {
	*mock.HAL
	chassis *machineChassis
}

type machineChassis struct{ *mock.Chassis }

// WarmReset is what go-ipmi's server calls for a soft shutdown.
func (c *machineChassis) WarmReset(ctx context.Context) error {
	if err := c.Chassis.WarmReset(ctx); err != nil {
		return err
	}
	return c.SetPower(ctx, false)
}

func (h *machineHAL) Chassis() hal.ChassisHAL { return h.chassis }

const (
	bmcUser     = "rivet"
	bmcPassword = "ipmi-s3cret"
)

// startBMC runs go-ipmi's BMC server on a loopback UDP port and returns
// its port and machine.
func startBMC(t *testing.T) (int, *mock.Chassis) {
	t.Helper()
	base := mock.New()
	ch := base.Chassis().(*mock.Chassis)
	h := &machineHAL{HAL: base, chassis: &machineChassis{ch}}
	b := bmc.New(bmc.DeviceInfo{DeviceID: 32, IPMIVersion: 0x20, ManufacturerID: 0x000157}, [16]byte{1}, h,
		bmc.WithClock(clock.Real))
	u, err := b.Users.Add(2, bmcUser)
	if err != nil {
		t.Fatal(err)
	}
	u.SetPassword([]byte(bmcPassword))
	u.Enabled = true
	u.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServer(b, conn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		conn.Close()
		<-done
	})
	return conn.LocalAddr().(*net.UDPAddr).Port, ch
}

func machineOf(ch *mock.Chassis) drivertest.Machine {
	on, _ := ch.PowerState(context.Background())
	var m drivertest.Machine
	m.On = on
	flags, err := ch.GetBootFlags(context.Background())
	if err != nil || !flags.BootFlagsValid {
		return m
	}
	for dev, sel := range selectors {
		if sel == flags.BootDeviceSelector {
			m.BootDevice = dev
		}
	}
	m.Persistent = flags.Persist
	m.BootMode = power.BootModeBIOS
	if flags.BIOSBootType == types.BIOSBootTypeEFI {
		m.BootMode = power.BootModeUEFI
	}
	return m
}

func harness(version string) func(t *testing.T) drivertest.Harness {
	return func(t *testing.T) drivertest.Harness {
		port, ch := startBMC(t)
		d := New(Config{Timeout: 2 * time.Second, Retries: 1, PollInterval: 10 * time.Millisecond})
		di := map[string]any{"ipmi_address": "127.0.0.1", "ipmi_port": float64(port),
			"ipmi_username": bmcUser, "ipmi_password": bmcPassword}
		if version != "" {
			di["ipmi_protocol_version"] = version
		}
		// A UDP port nobody listens on: requests time out.
		dead, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		deadPort := dead.LocalAddr().(*net.UDPAddr).Port
		dead.Close()
		return drivertest.Harness{
			Driver:  d,
			Node:    power.Node{UUID: "4f0d1d6e-5a44-4c77-9d2e-0f3c2a1b7c11", DriverInfo: di},
			Machine: func() drivertest.Machine { return machineOf(ch) },
			SetMachinePower: func(on bool) {
				if err := ch.SetPower(context.Background(), on); err != nil {
					t.Fatal(err)
				}
			},
			InvalidDriverInfo: []map[string]any{
				{},
				{"ipmi_address": "127.0.0.1", "ipmi_port": "port"},
				{"ipmi_address": "127.0.0.1", "ipmi_port": float64(70000)},
				{"ipmi_address": "127.0.0.1", "ipmi_protocol_version": "3.0"},
				{"ipmi_address": "127.0.0.1", "ipmi_priv_level": "ROOT"},
				{"ipmi_address": 7},
			},
			Unreachable: power.Node{UUID: "unreachable", DriverInfo: map[string]any{
				"ipmi_address": "127.0.0.1", "ipmi_port": strconv.Itoa(deadPort),
				"ipmi_username": bmcUser, "ipmi_password": bmcPassword}},
			UnreachableTimeout: 20 * time.Second,
		}
	}
}

func TestConformanceLanplus(t *testing.T) { drivertest.Run(t, harness("2.0")) }

func TestConformanceLan15(t *testing.T) { drivertest.Run(t, harness("1.5")) }

func TestWrongPasswordFails(t *testing.T) {
	port, ch := startBMC(t)
	d := New(Config{Timeout: time.Second, Retries: 1})
	n := power.Node{UUID: "n1", DriverInfo: map[string]any{"ipmi_address": "127.0.0.1",
		"ipmi_port": float64(port), "ipmi_username": bmcUser, "ipmi_password": "not-the-password"}}
	err := d.SetPowerState(context.Background(), n, power.On)
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if on, _ := ch.PowerState(context.Background()); on {
		t.Fatal("machine powered on with a wrong password")
	}
	if strings.Contains(err.Error(), "not-the-password") || !strings.Contains(err.Error(), "node n1") {
		t.Fatalf("error = %v", err)
	}
}
