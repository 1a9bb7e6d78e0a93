package virtualrack

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Dir: "/tmp/rack", Conductor: "c", DeployKernel: "k", DeployRamdisk: "r",
		Nodes: []NodeSpec{{}, {Name: "b1", Firmware: BIOS, DiskBus: qemu.DiskMegaSAS}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := NodeSpec{Name: "node1", Firmware: UEFI, NICModel: "e1000e", DiskBus: qemu.DiskNVMe, NICROM: qemu.NICROMiPXE,
		DiskSize: DefaultDiskSize, MemoryMB: DefaultMemoryMB, CPUs: 1}
	if cfg.Nodes[0] != want {
		t.Errorf("defaults %+v, want %+v", cfg.Nodes[0], want)
	}
	if n := cfg.Nodes[1]; n.Name != "b1" || n.Firmware != BIOS || n.DiskBus != qemu.DiskMegaSAS {
		t.Errorf("second node %+v", n)
	}
	if cfg.Network != DefaultNetwork || cfg.HeartbeatTimeout != DefaultHeartbeatTimeout ||
		cfg.KernelAppendParams != DefaultKernelAppendParams || cfg.QEMU != qemu.DefaultBinary || cfg.Logger == nil {
		t.Errorf("config defaults %+v", cfg)
	}
}

func TestConfigRefused(t *testing.T) {
	base := func() Config {
		return Config{Dir: "/tmp/rack", Conductor: "c", DeployKernel: "k", DeployRamdisk: "r", Nodes: []NodeSpec{{}}}
	}
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no dir":        {func(c *Config) { c.Dir = "" }, "no Dir"},
		"long dir":      {func(c *Config) { c.Dir = "/tmp/" + strings.Repeat("d", 60) }, "longer than 56 bytes"},
		"no conductor":  {func(c *Config) { c.Conductor = "" }, "no Conductor"},
		"no nodes":      {func(c *Config) { c.Nodes = nil }, "0 nodes"},
		"too many":      {func(c *Config) { c.Nodes = make([]NodeSpec, MaxNodes+1) }, "65 nodes"},
		"network":       {func(c *Config) { c.Network = netip.MustParsePrefix("10.0.0.0/16") }, "want an IPv4 /24"},
		"last /24":      {func(c *Config) { c.Network = netip.MustParsePrefix("10.0.255.0/24") }, "room for the BMC /24"},
		"v6":            {func(c *Config) { c.Network = netip.MustParsePrefix("fd00::/64") }, "want an IPv4 /24"},
		"heartbeat":     {func(c *Config) { c.HeartbeatTimeout = 1 }, "at least 1s"},
		"name":          {func(c *Config) { c.Nodes[0].Name = "has space" }, "want up to 16"},
		"long name":     {func(c *Config) { c.Nodes[0].Name = "a-name-longer-than-16" }, "want up to 16"},
		"same name":     {func(c *Config) { c.Nodes = []NodeSpec{{Name: "n"}, {Name: "N"}} }, "used twice"},
		"firmware":      {func(c *Config) { c.Nodes[0].Firmware = "coreboot" }, "firmware"},
		"nic":           {func(c *Config) { c.Nodes[0].NICModel = "ne2k" }, "NIC model"},
		"disk bus":      {func(c *Config) { c.Nodes[0].DiskBus = "floppy" }, "disk bus"},
		"small disk":    {func(c *Config) { c.Nodes[0].DiskSize = 1 << 30 }, "at least 4 GiB"},
		"memory":        {func(c *Config) { c.Nodes[0].MemoryMB = 128 }, "at least 512 MiB"},
		"rom":           {func(c *Config) { c.Nodes[0].NICROM = "pxe" }, "NIC ROM"},
		"rom none bios": {func(c *Config) { c.Nodes[0] = NodeSpec{Firmware: BIOS, NICModel: "virtio", NICROM: qemu.NICROMNone} }, "needs UEFI"},
		"rom none nic":  {func(c *Config) { c.Nodes[0] = NodeSpec{NICModel: "e1000e", NICROM: qemu.NICROMNone} }, "virtio NIC"},
	} {
		cfg := base()
		c.mod(&cfg)
		if _, err := cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
	ok := base()
	ok.Nodes[0] = NodeSpec{NICModel: "virtio", NICROM: qemu.NICROMNone}
	if _, err := ok.withDefaults(); err != nil {
		t.Errorf("UEFI virtio node without option ROM refused: %v", err)
	}
}

func TestAddressPlan(t *testing.T) {
	p := planFor(netip.MustParsePrefix("10.250.0.0/24"))
	lo, hi := p.dhcpRange()
	for got, want := range map[string]string{
		p.conductorProv().String():       "10.250.0.1",
		p.conductorBMC().String():        "10.250.1.1",
		lo.String():                      "10.250.0.100",
		hi.String():                      "10.250.0.227",
		p.bmcAddr(0).String():            "10.250.1.10",
		p.bmcAddr(MaxNodes - 1).String(): "10.250.1.73",
		nodeMAC(0):                       "52:54:00:72:00:01",
		bmcMAC(2):                        "52:54:00:72:01:03",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}
