package ipmisim

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

func TestMain(m *testing.M) {
	RunHelper()
	os.Exit(m.Run())
}

// startBMC starts a BMC whose machine is a shell that records its boot
// device in boots.txt and sleeps until stopped.
func startBMC(t *testing.T) (*BMC, string) {
	t.Helper()
	if ok, why := Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	dir := t.TempDir()
	boots := filepath.Join(dir, "boots.txt")
	b, err := Start(context.Background(), Config{
		Dir: dir,
		LAN: LAN{IP: net.IPv4(192, 0, 2, 77), MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}},
		Command: func(boot string) []string {
			return []string{"/bin/sh", "-c", `echo "boot=$1" >> "$2"; exec sleep 600`, "machine", boot, boots}
		},
		StopTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b, boots
}

// ipmitool runs Debian's ipmitool against the BMC (lanplus, cipher suite
// 3: ipmi_sim does not answer Get Channel Cipher Suites).
func ipmitool(t *testing.T, b *BMC, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(b.Addr())
	p := vmtest.Tool(t, "ipmitool")
	argv := append([]string{"-I", "lanplus", "-C", "3", "-H", host, "-p", port, "-U", b.Username(), "-P", b.Password()}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func waitPower(t *testing.T, b *BMC, on bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); b.PoweredOn() != on; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("machine on=%v, want %v", b.PoweredOn(), on)
		}
	}
}

func TestChassisPowerAndBootDevice(t *testing.T) {
	b, boots := startBMC(t)
	if out := ipmitool(t, b, "power", "status"); !strings.Contains(out, "is off") {
		t.Fatalf("power status of a new BMC: %s", out)
	}
	ipmitool(t, b, "chassis", "bootdev", "pxe")
	if got := b.BootDevice(); got != "pxe" {
		t.Fatalf("boot device after bootdev pxe = %q", got)
	}
	ipmitool(t, b, "power", "on")
	waitPower(t, b, true)
	if out := ipmitool(t, b, "power", "status"); !strings.Contains(out, "is on") {
		t.Fatalf("power status after power on: %s", out)
	}
	ipmitool(t, b, "chassis", "bootdev", "disk")
	// A reset restarts the machine, which now boots the disk.
	ipmitool(t, b, "power", "reset")
	ipmitool(t, b, "power", "off")
	waitPower(t, b, false)
	if got, want := b.Starts(), []string{"pxe", "disk"}; !slices.Equal(got, want) {
		t.Fatalf("starts = %v, want %v", got, want)
	}
	data, err := os.ReadFile(boots)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "boot=pxe\nboot=disk\n"; got != want {
		t.Fatalf("the machine saw boot devices %q, want %q", got, want)
	}
	// The machine powering itself off reads as off.
	ipmitool(t, b, "power", "on")
	waitPower(t, b, true)
	if err := b.SetPower(false); err != nil {
		t.Fatal(err)
	}
	if out := ipmitool(t, b, "power", "status"); !strings.Contains(out, "is off") {
		t.Fatalf("power status after the machine stopped: %s", out)
	}
}

func TestSoftOffWithoutQMPStopsTheMachine(t *testing.T) {
	b, _ := startBMC(t)
	ipmitool(t, b, "power", "on")
	waitPower(t, b, true)
	ipmitool(t, b, "power", "soft")
	waitPower(t, b, false)
}

func TestLANConfiguration(t *testing.T) {
	b, _ := startBMC(t)
	out := ipmitool(t, b, "lan", "print", "1")
	for _, want := range []string{"192.0.2.77", "52:54:00:ab:cd:ef", "255.255.255.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("lan print lacks %s:\n%s", want, out)
		}
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	b, _ := startBMC(t)
	host, port, _ := net.SplitHostPort(b.Addr())
	p := vmtest.Tool(t, "ipmitool")
	out, err := exec.Command(p, "-I", "lanplus", "-C", "3", "-H", host, "-p", port, "-U", b.Username(),
		"-P", "not-"+b.Password(), "power", "on").CombinedOutput()
	if err == nil {
		t.Fatalf("wrong password accepted: %s", out)
	}
	if b.PoweredOn() {
		t.Fatal("machine powered on with a wrong password")
	}
}

func TestHelperLANAnswers(t *testing.T) {
	var out bytes.Buffer
	code := runLANHelper([]string{"10.1.2.3", "255.255.0.0", "10.1.0.1", "52:54:00:01:02:03", "get", "ip_addr", "mac_addr", "subnet_mask", "default_gw_ip_addr"}, &out)
	want := "ip_addr:10.1.2.3\nmac_addr:52:54:00:01:02:03\nsubnet_mask:255.255.0.0\ndefault_gw_ip_addr:10.1.0.1\n"
	if code != 0 || out.String() != want {
		t.Fatalf("lan helper = %d %q, want 0 %q", code, out.String(), want)
	}
	out.Reset()
	if code := runLANHelper([]string{"a", "b", "c", "d", "get", "nonsense"}, &out); code == 0 {
		t.Fatal("unknown parameter accepted")
	}
}

func TestChassisRequests(t *testing.T) {
	c := newChassis(Config{StopTimeout: time.Second, Dir: t.TempDir()}, &bytes.Buffer{}, nil)
	c.log = discardLogger()
	for _, tc := range []struct {
		args []string
		out  string
		ok   bool
	}{
		{[]string{"get", "power", "boot"}, "power:0\nboot:none\n", true},
		{[]string{"set", "boot", "default"}, "", true},
		{[]string{"get", "boot"}, "boot:default\n", true},
		{[]string{"set", "boot", "floppy"}, "", false},
		{[]string{"set", "power"}, "", false},
		{[]string{"get", "voltage"}, "", false},
		{[]string{"set", "power", "1"}, "", false}, // no start command
		{[]string{"reboot"}, "", false},
	} {
		out, err := c.handle(tc.args)
		if (err == nil) != tc.ok || (tc.ok && out != tc.out) {
			t.Errorf("handle(%v) = %q, %v; want %q, ok=%v", tc.args, out, err, tc.out, tc.ok)
		}
	}
}

func TestStartRefusesBadCredentials(t *testing.T) {
	for _, pw := range []string{`has"quote`, "has space", strings.Repeat("x", 17)} {
		if _, err := Start(context.Background(), Config{Dir: t.TempDir(), Password: pw}); err == nil {
			t.Errorf("password %q accepted", pw)
		}
	}
}

func TestStartRefusesUnquotablePaths(t *testing.T) {
	if _, err := Start(context.Background(), Config{Dir: filepath.Join(t.TempDir(), `a"b`)}); err == nil {
		t.Fatal("a directory with a double quote accepted")
	}
}

func TestLANConf(t *testing.T) {
	c := lanConf(Config{Name: "n1", Address: "127.0.0.1", Port: 6230, VMPort: 9002, Username: "admin", Password: "pw",
		Helper: []string{"/x/it's"}, LAN: LAN{IP: net.IPv4(10, 0, 0, 5), Netmask: net.IPv4(255, 255, 255, 0),
			Gateway: net.IPv4zero, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}, "/run/s.sock")
	for _, want := range []string{
		"name \"n1\"\n", "addr 127.0.0.1 6230\n", "serial 15 127.0.0.1 9002 codec VM\n",
		`user 2 true "admin" "pw" admin 10 md5 straight`,
		`chassis_control "GORACE=atexit_sleep_ms=0 '/x/it'\''s' '__rivet-ipmisim-chassis-control' '/run/s.sock'"`,
		`'10.0.0.5' '255.255.255.0' '0.0.0.0' '02:00:00:00:00:01'`,
	} {
		if !strings.Contains(c, want) {
			t.Errorf("lan.conf lacks %q:\n%s", want, c)
		}
	}
}
