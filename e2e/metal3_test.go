//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/httpbasic"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/drivers"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/utils"
	"golang.org/x/crypto/bcrypt"

	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// The rack the BMO replay runs in: a network namespace of its own with
// the conductor's address on a veth, ipmi_sim on its loopback as the
// node's BMC, and the conductor and the BMC's machine inside it. The test
// talks to the conductor from outside through a dialer that enters the
// namespace.
const (
	metal3Addr = "192.0.2.1"
	metal3Port = "6385"
	metal3MAC  = "52:54:00:6d:33:01"
	metal3User = "ironic-e2e" // BMO's e2e uses a random user name too
	// metal3Machine is the first argument that makes the test binary
	// play the machine behind the BMC (see runMachine).
	metal3Machine = "__rivet-metal3-machine"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == metal3Machine {
		os.Exit(runMachine(os.Args[2:]))
	}
}

// TestMetal3 replays, call for call and body for body, what Metal3's
// baremetal-operator sends to Ironic for one BareMetalHost (BMO's
// pkg/provisioner/ironic, gophercloud v2, the notes in docs/metal3.md),
// against the real rivet-conductor and rivet-agent binaries, with
// http_basic authentication as Metal3's ironic-image configures it
// (a bcrypt htpasswd file) and OpenIPMI's ipmi_sim as the host's BMC
// (BMH address ipmi://): version discovery and the drivers API before
// registration, register with BMO's body, ports, preprovisioning network
// data, manage, inspection with the real agent (inventory read back as BMO
// decodes it), provide with automated cleaning, provision with a config
// drive, root device hints and image_os_hash_*, power off and on, a
// service step, detach and adopt after a conductor restart, deprovision
// and delete; and the unversioned endpoint of Metal3's Ironic-CR mode.
// The machine behind the BMC netboots as iPXE would: it fetches the
// conductor's script for its MAC, downloads the deploy kernel and ramdisk
// BMO named (Rivet's virtual ramdisk here) and boots them in QEMU with the
// script's kernel parameters, a virtio NIC with the node's MAC and the
// loop device as its disk; booted from disk it stands for the deployed OS.
// The preprovisioning network data BMO sets gives the ramdisk its address
// (no DHCP).
func TestMetal3(t *testing.T) {
	start := time.Now()
	root := vmtest.RepoRoot(t)
	qemuBin := vmtest.QEMU(t)
	kernel := vmtest.Kernel(t)
	conductorBin := filepath.Join(root, "build/bin/rivet-conductor")
	ramdiskFile := filepath.Join(root, "build/initramfs-virtual.cpio.zst")
	for _, f := range []string{conductorBin, ramdiskFile} {
		if _, err := os.Stat(f); err != nil {
			vmtest.Unavailable(t, "%s is missing: run `make test` (it builds the binaries and the ramdisk)", f)
		}
	}
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	loop := loopdev.New(t, 5<<30)
	ns := vmtest.Netns(t)
	ipBin := vmtest.Tool(t, "ip")
	vmtest.Run(t, ipBin, "-n", ns, "link", "set", "lo", "up")
	vmtest.Run(t, ipBin, "-n", ns, "link", "add", "m3prov0", "type", "veth", "peer", "name", "m3prov1")
	vmtest.Run(t, ipBin, "-n", ns, "addr", "add", metal3Addr+"/24", "dev", "m3prov0")
	vmtest.Run(t, ipBin, "-n", ns, "link", "set", "m3prov0", "up")
	vmtest.Run(t, ipBin, "-n", ns, "link", "set", "m3prov1", "up")

	dir, err := os.MkdirTemp("/tmp", "rivet-e2e-metal3-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The image, and the deploy kernel and ramdisk under the names
	// ironic-image serves them by, at the URLs BMO puts in driver_info.
	imageDir := filepath.Join(dir, "images")
	if err := os.MkdirAll(imageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := ironicTestImage(t)
	sum := sha256.Sum256(img)
	if err := os.WriteFile(filepath.Join(imageDir, "disk.raw"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"ironic-python-agent.kernel": kernel, "ironic-python-agent.initramfs": ramdiskFile} {
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(filepath.Join(imageDir, name), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// ironic-image's htpasswd: bcrypt, one user.
	password := "e2e-" + hex.EncodeToString(sum[:6])
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(metal3User+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An old partition table on the disk, which cleaning must erase.
	writeDisk(t, loop.Path, img[:1<<20])

	apiURL := "http://" + metal3Addr + ":" + metal3Port
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var bmc *ipmisim.BMC
	if err := vmtest.InNetns(ns, func() error {
		var err error
		bmc, err = ipmisim.Start(context.Background(), ipmisim.Config{
			Dir: filepath.Join(dir, "bmc"),
			Command: func(boot string) []string {
				return []string{ipBin, "netns", "exec", ns, self, metal3Machine, "-boot", boot, "-api", apiURL,
					"-mac", metal3MAC, "-qemu", qemuBin, "-disk", loop.Path, "-dir", filepath.Join(dir, "machine")}
			},
			StopTimeout: 5 * time.Second,
		})
		return err
	}); err != nil {
		t.Fatalf("start the BMC: %v", err)
	}
	t.Cleanup(func() {
		bmc.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "bmc", "console.log"))
			t.Logf("---- machine console ----\n%s", tailBytes(b, 32<<10))
		}
	})

	cond := &metal3Conductor{t: t, bin: conductorBin, ns: ns, ip: ipBin, dir: dir, args: []string{
		"--listen", metal3Addr + ":" + metal3Port, "--api-url", apiURL,
		"--auth-strategy", "http_basic", "--http-basic-auth-user-file", htpasswd,
		"--state-dir", filepath.Join(dir, "state"), "--image-dir", imageDir, "--image-cache-dir", "none",
		"--automated-clean", "--ramdisk-heartbeat-timeout", "10s", "--deploy-callback-timeout", "10m",
	}}
	cond.start()
	t.Cleanup(cond.stop)
	httpClient := http.Client{Transport: &http.Transport{DialContext: vmtest.NetnsDialer(ns)}, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b := &bmoClient{t: t, ctx: ctx, http: httpClient, endpoint: apiURL + "/v1/", password: password}
	phase := func(what string, since time.Time) { t.Logf("%-44s %6.1f s", what, time.Since(since).Seconds()) }

	// Readiness: version discovery (no credentials), then the drivers.
	t0 := time.Now()
	b.connect()
	if b.c.Microversion != "1.110" {
		t.Fatalf("BMO would talk at %s, want 1.110", b.c.Microversion)
	}
	b.checkDrivers()
	b.checkAuth()
	phase("discovery, drivers, auth", t0)

	// Register.
	t0 = time.Now()
	bmcInfo := map[string]any{"ipmi_address": "127.0.0.1", "ipmi_port": strings.TrimPrefix(bmc.Addr(), "127.0.0.1:"),
		"ipmi_username": bmc.Username(), "ipmi_password": bmc.Password(), "ipmi_priv_level": "ADMINISTRATOR"}
	uuid := b.register(bmcInfo, imageURL(apiURL, "ironic-python-agent.kernel"), imageURL(apiURL, "ironic-python-agent.initramfs"), "power off")
	phase("register, ports, manage", t0)

	// Inspect.
	t0 = time.Now()
	b.inspect(uuid)
	phase("inspect (real agent, IPMI)", t0)
	console := string(readFile(t, filepath.Join(dir, "bmc", "console.log")))
	for _, want := range []string{"ip=10.0.2.15::10.0.2.2:255.255.255.0:::none", "nofb nomodeset vga=normal rivet.e2e=1",
		"ipa-inspection-callback-url=" + apiURL + "/v1/continue_inspection?node_uuid=" + uuid,
		"static network configured"} {
		if !strings.Contains(console, want) {
			t.Errorf("the machine's console lacks %q", want)
		}
	}

	// Provide, with automated cleaning.
	t0 = time.Now()
	b.provide(uuid)
	phase("provide + automated clean", t0)
	if !headZero(t, loop.Path) {
		t.Error("automated cleaning left the old partition table")
	}

	// Provision.
	t0 = time.Now()
	b.provision(uuid, "/dev/vda", imageURL(apiURL, "disk.raw"), hex.EncodeToString(sum[:]))
	phase("provision → active", t0)
	checkImageAndConfigDrive(t, loop.Path, 5<<30, img)
	if starts := bmc.Starts(); starts[len(starts)-1] != "disk" {
		t.Errorf("the deployed node booted %q, want disk (starts %v)", starts[len(starts)-1], starts)
	}

	// Power, as manageHostPower does.
	t0 = time.Now()
	b.power(uuid, nodes.PowerOff, "power off")
	b.power(uuid, nodes.PowerOn, "power on")
	phase("power off, power on", t0)

	// A service step.
	t0 = time.Now()
	before := len(bmc.Starts())
	b.service(uuid)
	if n := len(bmc.Starts()); n != before+1 {
		t.Errorf("servicing with a reboot step started the machine %d times", n-before)
	}
	phase("service (reboot, wait)", t0)

	// Detach, restart the conductor, register again and adopt.
	t0 = time.Now()
	b.detach(uuid)
	cond.stop()
	cond.start()
	before = len(bmc.Starts())
	uuid = b.register(bmcInfo, imageURL(apiURL, "ironic-python-agent.kernel"), imageURL(apiURL, "ironic-python-agent.initramfs"), "power on")
	b.adopt(uuid)
	if n := len(bmc.Starts()); n != before || !bmc.PoweredOn() {
		t.Errorf("adoption touched the machine: %d starts, powered on %v", n-before, bmc.PoweredOn())
	}
	phase("detach, conductor restart, adopt", t0)

	// Deprovision and delete.
	t0 = time.Now()
	b.deprovision(uuid)
	phase("deprovision + automated clean", t0)
	if hasGPT(t, loop.Path) || !headZero(t, loop.Path) {
		t.Error("cleaning after deprovisioning left the image's partition table")
	}
	b.delete(uuid)

	// Metal3's Ironic-CR mode: the same API without /v1.
	b.unversioned(apiURL + "/")
	t.Logf("BMO replay: %.1f s in all", time.Since(start).Seconds())
	if strings.Contains(cond.log(), "panic") {
		t.Error("the conductor logged a panic")
	}
}

func imageURL(api, name string) string { return api + "/images/" + name }

// metal3Conductor runs rivet-conductor inside the namespace.
type metal3Conductor struct {
	t       *testing.T
	bin, ns string
	ip, dir string
	args    []string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan error
	logBuf  syncbuf.Buffer
}

func (c *metal3Conductor) start() {
	c.t.Helper()
	cmd := exec.Command(c.ip, append([]string{"netns", "exec", c.ns, c.bin}, c.args...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	logFile, err := os.OpenFile(filepath.Join(c.dir, "conductor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			fmt.Fprintln(&c.logBuf, sc.Text())
		}
		logFile.Close()
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		done <- err
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	hc := http.Client{Transport: &http.Transport{DialContext: vmtest.NetnsDialer(c.ns)}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://" + metal3Addr + ":" + metal3Port + "/v1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			c.t.Fatalf("rivet-conductor exited: %v\n%s", err, tailBytes([]byte(c.log()), 8<<10))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("conductor API not up after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *metal3Conductor) stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	if c.t.Failed() {
		c.t.Logf("---- rivet-conductor log ----\n%s", tailBytes([]byte(c.log()), 48<<10))
	}
}

func (c *metal3Conductor) log() string { return c.logBuf.String() }

// bmoClient makes the calls BMO's Ironic provisioner makes, in its
// order, with its bodies, through gophercloud.
type bmoClient struct {
	t        *testing.T
	ctx      context.Context
	http     http.Client
	endpoint string
	password string
	c        *gophercloud.ServiceClient
}

// connect builds the client as BMO's clients.IronicClient does
// (http_basic) and negotiates the microversion as features.go does: the
// highest of 1.110, 1.109, 1.95, 1.93, 1.89 the server allows.
func (b *bmoClient) connect() {
	b.t.Helper()
	c, err := httpbasic.NewBareMetalHTTPBasic(httpbasic.EndpointOpts{IronicEndpoint: b.endpoint,
		IronicUser: metal3User, IronicUserPassword: b.password})
	if err != nil {
		b.t.Fatal(err)
	}
	c.HTTPClient = b.http
	c.Microversion = "1.89"
	mv, err := utils.GetSupportedMicroversions(b.ctx, c)
	if err != nil {
		b.t.Fatalf("version discovery: %v", err)
	}
	if mv.MinMajor != 1 || mv.MaxMajor != 1 || mv.MaxMinor < 89 {
		b.t.Fatalf("server microversions %+v; BMO needs 1.89", mv)
	}
	for _, m := range []int{110, 109, 95, 93, 89} {
		if mv.MaxMinor >= m {
			c.Microversion = fmt.Sprintf("1.%d", m)
			break
		}
	}
	b.c = c
}

// checkDrivers is BMO's checkIronicConductor (GET /v1/drivers, at least
// one), then what clients read to choose interfaces.
func (b *bmoClient) checkDrivers() {
	b.t.Helper()
	pages, err := drivers.ListDrivers(b.c, drivers.ListDriversOpts{}).AllPages(b.ctx)
	if err != nil {
		b.t.Fatalf("GET /v1/drivers: %v", err)
	}
	list, err := drivers.ExtractDrivers(pages)
	if err != nil || len(list) == 0 {
		b.t.Fatalf("drivers: %v %v", list, err)
	}
	d, err := drivers.GetDriverDetails(b.ctx, b.c, "ipmi").Extract()
	if err != nil {
		b.t.Fatalf("GET /v1/drivers/ipmi: %v", err)
	}
	if d.DefaultPowerInterface != "ipmitool" || !slices.Contains(d.EnabledInspectInterfaces, "agent") ||
		!slices.Contains(d.EnabledRaidInterfaces, "no-raid") || !slices.Contains(d.EnabledBootInterfaces, "ipxe") {
		b.t.Fatalf("ipmi hardware type: %+v", d)
	}
}

// checkAuth: everything but discovery and the ramdisk endpoints needs the
// credentials.
func (b *bmoClient) checkAuth() {
	b.t.Helper()
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {metal3User, "wrong", 401}, {metal3User, b.password, 200}} {
		req, _ := http.NewRequestWithContext(b.ctx, "GET", b.endpoint+"nodes", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := b.http.Do(req)
		if err != nil {
			b.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			b.t.Errorf("GET /v1/nodes as %q/%q: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
	}
}

// status is the HTTP status of a gophercloud error (0 for none).
func status(err error) int {
	var e gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &e) {
		return e.Actual
	}
	return 0
}

// patch sends one node PATCH as BMO's tryUpdateNode does (add/remove).
func (b *bmoClient) patch(uuid string, ops ...nodes.UpdateOperation) *nodes.Node {
	b.t.Helper()
	opts := make(nodes.UpdateOpts, len(ops))
	for i, o := range ops {
		opts[i] = o
	}
	n, err := nodes.Update(b.ctx, b.c, uuid, opts).Extract()
	if err != nil {
		b.t.Fatalf("PATCH node %s %+v: %v", uuid, ops, err)
	}
	return n
}

func add(path string, v any) nodes.UpdateOperation {
	return nodes.UpdateOperation{Op: nodes.AddOp, Path: path, Value: v}
}

// changeState is tryChangeNodeProvisionState: 202, retried on 409.
func (b *bmoClient) changeState(uuid string, opts nodes.ProvisionStateOpts) {
	b.t.Helper()
	for {
		err := nodes.ChangeProvisionState(b.ctx, b.c, uuid, opts).ExtractErr()
		if err == nil {
			return
		}
		if status(err) != http.StatusConflict || b.ctx.Err() != nil {
			b.t.Fatalf("provision %s of %s: %v", opts.Target, uuid, err)
		}
		time.Sleep(time.Second)
	}
}

// waitFor polls the node as BMO's reconciles do until it rests in want;
// a rest in another stable state fails the test.
func (b *bmoClient) waitFor(uuid, want string) *nodes.Node {
	b.t.Helper()
	for {
		n, err := nodes.Get(b.ctx, b.c, uuid).Extract()
		if err != nil {
			b.t.Fatalf("GET node %s: %v", uuid, err)
		}
		if n.ProvisionState == want && n.TargetProvisionState == "" {
			return n
		}
		if n.TargetProvisionState == "" && strings.HasSuffix(n.ProvisionState, "failed") {
			b.t.Fatalf("node %s is %s (last_error %q), want %s", uuid, n.ProvisionState, n.LastError, want)
		}
		if b.ctx.Err() != nil {
			b.t.Fatalf("node %s still %s/%s, want %s", uuid, n.ProvisionState, n.TargetProvisionState, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// register is BMO's Register: find the host (by name, then MAC), enroll
// it with BMO's body, add its boot port, set the preprovisioning network
// data, move it to manageable, and configure it (deploy ramdisk, kernel
// parameters, automated cleaning, capabilities). power is the power state
// the BMC reports for the machine.
func (b *bmoClient) register(bmcInfo map[string]any, kernel, ramdisk, power string) string {
	b.t.Helper()
	for _, name := range []string{"metal3~worker-0", "worker-0"} {
		if _, err := nodes.Get(b.ctx, b.c, name).Extract(); status(err) != http.StatusNotFound {
			b.t.Fatalf("GET /v1/nodes/%s before enrolment: %v", name, err)
		}
	}
	fields := []string{"node_uuid", "uuid", "address"}
	if got := b.ports(ports.ListOpts{Address: strings.ToUpper(metal3MAC), Fields: fields}); len(got) != 0 {
		b.t.Fatalf("ports with the boot MAC before enrolment: %v", got)
	}
	off := false
	created, err := nodes.Create(b.ctx, b.c, nodes.CreateOpts{
		Name: "metal3~worker-0", Driver: "ipmi", DriverInfo: bmcInfo,
		BootInterface: "ipxe", RAIDInterface: "no-raid", InspectInterface: "agent", DisablePowerOff: &off,
		Properties: map[string]any{"capabilities": "boot_mode:bios", "cpu_arch": "x86_64"},
	}).Extract()
	if err != nil {
		b.t.Fatalf("POST /v1/nodes: %v", err)
	}
	if created.ProvisionState != "enroll" || created.UUID == "" || created.PowerInterface != "ipmitool" ||
		created.InspectInterface != "agent" || created.DeployInterface != "direct" {
		b.t.Fatalf("created node %+v", created)
	}
	uuid := created.UUID
	if got, err := nodes.Get(b.ctx, b.c, "metal3~worker-0").Extract(); err != nil || got.UUID != uuid {
		b.t.Fatalf("GET by name: %v %v", got, err)
	}
	if got := b.ports(ports.ListOpts{NodeUUID: uuid, Fields: fields}); len(got) != 0 {
		b.t.Fatalf("ports of the new node: %v", got)
	}
	pxe := true
	if _, err := ports.Create(b.ctx, b.c, ports.CreateOpts{NodeUUID: uuid, Address: metal3MAC, PXEEnabled: &pxe}).Extract(); err != nil {
		b.t.Fatalf("POST /v1/ports: %v", err)
	}
	// Preprovisioning network data (a network without DHCP): the
	// machine's user-mode network, whose gateway leads to the conductor.
	b.patch(uuid, add("/network_data", map[string]any{
		"links": []any{map[string]any{"id": "eth0", "type": "phy", "ethernet_mac_address": metal3MAC}},
		"networks": []any{map[string]any{"id": "provisioning", "type": "ipv4", "link": "eth0", "ip_address": "10.0.2.15",
			"netmask": "255.255.255.0", "routes": []any{map[string]any{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"}}}},
		"services": []any{map[string]any{"type": "dns", "address": "10.0.2.3"}},
	}))
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetManage})
	n := b.waitFor(uuid, "manageable")
	if n.PowerState != power || n.LastError != "" {
		b.t.Fatalf("after verification through the BMC: power %q last_error %q, want %q", n.PowerState, n.LastError, power)
	}
	n = b.patch(uuid, add("/driver_info/deploy_kernel", kernel), add("/driver_info/deploy_ramdisk", ramdisk),
		add("/driver_info/kernel_append_params", "%default% rivet.e2e=1"), add("/automated_clean", true),
		add("/properties/capabilities", "boot_mode:bios"), add("/properties/cpu_arch", "x86_64"))
	if n.AutomatedClean == nil || !*n.AutomatedClean || n.DriverInfo["ipmi_password"] != "******" {
		b.t.Fatalf("configured node: automated_clean %v driver_info %v", n.AutomatedClean, n.DriverInfo)
	}
	// After a successful registration BMO reads the firmware components.
	fw, err := nodes.ListFirmware(b.ctx, b.c, uuid).Extract()
	if err != nil || len(fw) != 0 {
		b.t.Fatalf("GET firmware of an ipmi node: %v %v", fw, err)
	}
	return uuid
}

func (b *bmoClient) ports(opts ports.ListOpts) []ports.Port {
	b.t.Helper()
	pages, err := ports.List(b.c, opts).AllPages(b.ctx)
	if err != nil {
		b.t.Fatalf("GET /v1/ports %+v: %v", opts, err)
	}
	l, err := ports.ExtractPorts(pages)
	if err != nil {
		b.t.Fatal(err)
	}
	return l
}

// capacity is HasCapacity's node list.
func (b *bmoClient) capacity() {
	b.t.Helper()
	pages, err := nodes.List(b.c, nodes.ListOpts{Fields: []string{"uuid", "name", "provision_state", "boot_interface"}}).AllPages(b.ctx)
	if err != nil {
		b.t.Fatalf("capacity list: %v", err)
	}
	l, err := nodes.ExtractNodes(pages)
	if err != nil || len(l) == 0 || l[0].BootInterface != "ipxe" {
		b.t.Fatalf("capacity list: %+v %v", l, err)
	}
}

// inspect is InspectHardware: inventory 404, inspect, read it back.
func (b *bmoClient) inspect(uuid string) {
	b.t.Helper()
	if _, err := nodes.GetInventory(b.ctx, b.c, uuid).Extract(); status(err) != http.StatusNotFound {
		b.t.Fatalf("inventory before inspection: %v", err)
	}
	b.capacity()
	b.patch(uuid, add("/properties/capabilities", "boot_mode:bios"), add("/properties/cpu_arch", "x86_64"),
		add("/inspect_interface", "agent"))
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetInspect})
	n := b.waitFor(uuid, "manageable")
	if n.LastError != "" {
		b.t.Fatalf("inspection: last_error %q", n.LastError)
	}
	data, err := nodes.GetInventory(b.ctx, b.c, uuid).Extract()
	if err != nil {
		b.t.Fatalf("GET inventory (as BMO decodes it): %v", err)
	}
	inv := data.Inventory
	var macs []string
	for _, i := range inv.Interfaces {
		macs = append(macs, i.MACAddress)
	}
	if inv.CPU.Count < 1 || inv.Memory.PhysicalMb < 1 || !slices.Contains(macs, metal3MAC) || len(inv.Disks) != 1 {
		b.t.Fatalf("inventory: cpu %+v memory %+v NICs %v disks %+v", inv.CPU, inv.Memory, macs, inv.Disks)
	}
	pd, err := data.PluginData.AsStandardData()
	if err != nil {
		b.t.Fatalf("plugin_data as BMO reads it: %v", err)
	}
	if pd.AllInterfaces["eth0"].PXEEnabled != true || !slices.Contains(pd.MACs, metal3MAC) {
		b.t.Fatalf("plugin_data: all_interfaces %+v macs %v", pd.AllInterfaces, pd.MACs)
	}
	if n.Properties["cpus"] == nil || n.Properties["local_gb"] == nil || n.Properties["capabilities"] != "boot_mode:bios" {
		b.t.Fatalf("properties after inspection: %v", n.Properties)
	}
	l := b.ports(ports.ListOpts{NodeUUID: uuid, Fields: []string{"node_uuid", "uuid", "address"}})
	if len(l) != 1 || l[0].Address != metal3MAC {
		b.t.Fatalf("ports after inspection: %+v", l)
	}
}

// provide is Provision in manageable: provide, with automated cleaning.
func (b *bmoClient) provide(uuid string) {
	b.t.Helper()
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetProvide})
	n := b.waitFor(uuid, "available")
	if n.PowerState != "power off" || n.LastError != "" || len(n.CleanStep) != 0 {
		b.t.Fatalf("after cleaning: power %q last_error %q clean_step %v", n.PowerState, n.LastError, n.CleanStep)
	}
}

// provision is Provision in available: the instance PATCH, validate, and
// active with BMO's config drive.
func (b *bmoClient) provision(uuid, disk, image, sha256sum string) {
	b.t.Helper()
	const k8sUID = "6f0d6c3e-94fb-4f45-8bba-2a8b3f6d3a10"
	b.patch(uuid, add("/instance_uuid", k8sUID), add("/instance_info/capabilities", map[string]any{}),
		add("/instance_info/root_device", map[string]any{"name": "s== " + disk}),
		add("/instance_info/image_source", image), add("/instance_info/image_disk_format", "raw"),
		add("/instance_info/image_os_hash_algo", "sha256"), add("/instance_info/image_os_hash_value", sha256sum),
		add("/driver_info/force_persistent_boot_device", "Default"))
	v, err := nodes.Validate(b.ctx, b.c, uuid).Extract()
	if err != nil {
		b.t.Fatalf("validate: %v", err)
	}
	if !v.Boot.Result || !v.Deploy.Result {
		b.t.Fatalf("host validation error: boot %q deploy %q", v.Boot.Reason, v.Deploy.Reason)
	}
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetActive, ConfigDrive: map[string]any{
		"meta_data": map[string]any{"uuid": k8sUID, "metal3-namespace": "metal3", "metal3-name": "worker-0",
			"local-hostname": "worker-0", "local_hostname": "worker-0", "name": "worker-0"},
		"user_data":    "#cloud-config\nhostname: worker-0\n",
		"network_data": map[string]any{"links": []any{}, "networks": []any{}, "services": []any{}},
	}})
	n := b.waitFor(uuid, "active")
	if n.PowerState != "power on" || n.LastError != "" || n.InstanceUUID != k8sUID ||
		n.InstanceInfo["image_source"] != image || n.InstanceInfo["image_os_hash_value"] != sha256sum {
		b.t.Fatalf("active node: power %q last_error %q instance %q instance_info %v", n.PowerState, n.LastError, n.InstanceUUID, n.InstanceInfo)
	}
}

// power is changePower: target provision state empty, then the power
// request, then polling power_state.
func (b *bmoClient) power(uuid string, target nodes.TargetPowerState, want string) {
	b.t.Helper()
	if err := nodes.ChangePowerState(b.ctx, b.c, uuid, nodes.PowerStateOpts{Target: target}).ExtractErr(); err != nil {
		b.t.Fatalf("power %s: %v", target, err)
	}
	for {
		n, err := nodes.Get(b.ctx, b.c, uuid).Extract()
		if err != nil {
			b.t.Fatal(err)
		}
		if n.PowerState == want && n.TargetPowerState == "" {
			if n.LastError != "" {
				b.t.Fatalf("power %s: last_error %q", target, n.LastError)
			}
			return
		}
		if b.ctx.Err() != nil {
			b.t.Fatalf("power %s: still %q", target, n.PowerState)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// service runs service steps on the active node: Ironic's flow steps,
// which need no ramdisk (BMO's own BIOS and firmware steps are the redfish
// interfaces', not implemented for ipmi).
func (b *bmoClient) service(uuid string) {
	b.t.Helper()
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetService, ServiceSteps: []nodes.ServiceStep{
		{Interface: nodes.InterfacePower, Step: "reboot"},
		{Interface: nodes.InterfaceDeploy, Step: "wait", Args: map[string]any{"seconds": 1}},
	}})
	n := b.waitFor(uuid, "active")
	if n.LastError != "" || n.PowerState != "power on" || len(n.ServiceStep) != 0 {
		b.t.Fatalf("after servicing: last_error %q power %q service_step %v", n.LastError, n.PowerState, n.ServiceStep)
	}
}

// detach is realDelete of a provisioned host: maintenance, then delete,
// which must not touch the machine.
func (b *bmoClient) detach(uuid string) {
	b.t.Helper()
	if err := nodes.SetMaintenance(b.ctx, b.c, uuid, nodes.MaintenanceOpts{Reason: "forcing deletion in baremetal-operator"}).ExtractErr(); err != nil {
		b.t.Fatalf("maintenance: %v", err)
	}
	if err := nodes.Delete(b.ctx, b.c, uuid).ExtractErr(); err != nil {
		b.t.Fatalf("delete an active node in maintenance: %v", err)
	}
	if _, err := nodes.Get(b.ctx, b.c, uuid).Extract(); status(err) != http.StatusNotFound {
		b.t.Fatalf("GET a deleted node: %v", err)
	}
}

// adopt is Adopt of a provisioned host whose node was re-created.
func (b *bmoClient) adopt(uuid string) {
	b.t.Helper()
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetAdopt})
	n := b.waitFor(uuid, "active")
	if n.PowerState != "power on" || n.LastError != "" {
		b.t.Fatalf("adopted node: power %q last_error %q", n.PowerState, n.LastError)
	}
}

// deprovision is Deprovision of an active node: sync automated_clean,
// then deleted, through cleaning to available.
func (b *bmoClient) deprovision(uuid string) {
	b.t.Helper()
	b.patch(uuid, add("/automated_clean", true))
	b.changeState(uuid, nodes.ProvisionStateOpts{Target: nodes.TargetDeleted})
	n := b.waitFor(uuid, "available")
	if n.PowerState != "power off" || n.LastError != "" || n.InstanceUUID != "" {
		b.t.Fatalf("deprovisioned node: power %q last_error %q instance %q", n.PowerState, n.LastError, n.InstanceUUID)
	}
}

// delete is realDelete of an available node.
func (b *bmoClient) delete(uuid string) {
	b.t.Helper()
	if err := nodes.Delete(b.ctx, b.c, uuid).ExtractErr(); err != nil {
		b.t.Fatalf("delete: %v", err)
	}
	if _, err := nodes.Get(b.ctx, b.c, uuid).Extract(); status(err) != http.StatusNotFound {
		b.t.Fatalf("GET a deleted node: %v", err)
	}
	if l := b.ports(ports.ListOpts{Address: metal3MAC}); len(l) != 0 {
		b.t.Fatalf("ports of a deleted node: %v", l)
	}
}

// unversioned repeats discovery, the drivers check and a node list on
// the endpoint without /v1, as Metal3's Ironic-CR mode uses it.
func (b *bmoClient) unversioned(endpoint string) {
	b.t.Helper()
	u := &bmoClient{t: b.t, ctx: b.ctx, http: b.http, endpoint: endpoint, password: b.password}
	u.connect()
	if u.c.Microversion != "1.110" {
		b.t.Fatalf("unversioned endpoint: microversion %s", u.c.Microversion)
	}
	u.checkDrivers()
	pages, err := nodes.List(u.c, nodes.ListOpts{}).AllPages(b.ctx)
	if err != nil {
		b.t.Fatalf("GET /nodes: %v", err)
	}
	if _, err := nodes.ExtractNodes(pages); err != nil {
		b.t.Fatal(err)
	}
}

func writeDisk(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func hasGPT(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = ondisk.ReadGPT(f, 5<<30, 512)
	return err == nil
}

// headZero reports whether the disk's first MiB is zero (metadata
// erased).
func headZero(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 1<<20)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(head, make([]byte, len(head)))
}

// checkImageAndConfigDrive checks the deployed disk: the image's
// partitions and their bytes as written, and one more partition, the
// config drive, at the end of the disk, holding BMO's meta_data.
func checkImageAndConfigDrive(t *testing.T, path string, size int64, img []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := ondisk.ReadGPT(bytes.NewReader(img), int64(len(img)), 512)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ondisk.ReadGPT(f, size, 512)
	if err != nil {
		t.Fatalf("GPT of the deployed disk: %v", err)
	}
	if len(got.Partitions) != len(want.Partitions)+1 || got.Partitions[0] != want.Partitions[0] || got.DiskGUID != want.DiskGUID {
		t.Fatalf("partitions after the deploy %+v; want the image's %+v and a config drive", got.Partitions, want.Partitions)
	}
	// The image's data, after its GPT and before its backup GPT.
	data := make([]byte, len(img)-67*512)
	if _, err := f.ReadAt(data, 34*512); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(data, img[34*512:len(img)-33*512]); i >= 0 {
		t.Fatalf("%s does not hold the image: first difference at byte %d", path, 34*512+i)
	}
	cd := got.Partitions[len(got.Partitions)-1]
	buf := make([]byte, (cd.LastLBA-cd.FirstLBA+1)*512)
	if _, err := f.ReadAt(buf, int64(cd.FirstLBA)*512); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Contains(buf, []byte("config-2")) || !bytes.Contains(buf, []byte(`"metal3-name"`)) {
		t.Fatalf("the last partition (%d–%d) is no config drive with BMO's meta_data", cd.FirstLBA, cd.LastLBA)
	}
}

// runMachine is the machine behind the BMC, run by ipmi_sim's chassis
// control on power on, inside the test's namespace. Booted from the
// network (boot device pxe) it does what iPXE would with the conductor's
// script for its MAC: fetch the kernel and initramfs it names and boot
// them with its kernel parameters — in QEMU, with a virtio NIC of the
// node's MAC on user-mode networking (the agent's API forwarded to the
// conductor's address, which the agent advertises) and the disk. The
// machine is off when QEMU exits (the agent powers it off). Booted from
// disk it stands for the deployed OS and runs until powered off.
func runMachine(args []string) int {
	fs := flag.NewFlagSet(metal3Machine, flag.ContinueOnError)
	boot := fs.String("boot", "", "boot device")
	api := fs.String("api", "", "conductor URL")
	mac := fs.String("mac", "", "the NIC's MAC")
	qemu := fs.String("qemu", "", "QEMU binary")
	disk := fs.String("disk", "", "the machine's disk")
	dir := fs.String("dir", "", "scratch directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Printf("machine: powered on, boot device %q\n", *boot)
	if *boot != "pxe" {
		fmt.Println("machine: booting the local disk: the deployed OS runs")
		<-ctx.Done()
		return 0
	}
	script, err := ipxeScript(ctx, *api+"/boot/"+*mac+".ipxe")
	if err != nil || script.kernel == "" {
		fmt.Printf("machine: no deploy ramdisk (%v): booting the local disk\n", err)
		<-ctx.Done()
		return 0
	}
	fmt.Printf("machine: iPXE kernel parameters: %s\n", strings.Join(script.params, " "))
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Println("machine:", err)
		return 1
	}
	kernel, initrd := filepath.Join(*dir, "kernel"), filepath.Join(*dir, "initrd")
	for url, dst := range map[string]string{script.kernel: kernel, script.initrd: initrd} {
		if err := download(ctx, url, dst); err != nil {
			fmt.Println("machine: iPXE:", err)
			<-ctx.Done()
			return 0
		}
	}
	params := append(script.params, "console=ttyS0", "ipa-advertise-host="+metal3Addr, "ipa-advertise-port=9999")
	cmd := exec.CommandContext(ctx, *qemu, "-accel", "tcg", "-display", "none", "-monitor", "none", "-nodefaults", "-no-reboot",
		"-serial", "stdio", "-m", "1024", "-smp", "1",
		"-netdev", "user,id=n0,hostfwd=tcp:"+metal3Addr+":9999-:9999",
		"-device", "virtio-net-pci,netdev=n0,mac="+*mac+",romfile=",
		"-drive", "file="+*disk+",if=none,id=d0,format=raw,cache=none",
		"-device", "virtio-blk-pci,drive=d0,serial=metal3-disk",
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
		"-kernel", kernel, "-initrd", initrd, "-append", strings.Join(params, " "))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	fmt.Printf("machine: QEMU exited (%v): powered off\n", err)
	return 0
}

// ipxeBoot is what an iPXE script boots.
type ipxeBoot struct {
	kernel, initrd string
	params         []string
}

// ipxeScript fetches an iPXE script and reads its kernel and initrd lines;
// a script that boots nothing (it exits to the disk) gives an empty boot.
func ipxeScript(ctx context.Context, url string) (ipxeBoot, error) {
	var b ipxeBoot
	body, err := httpGet(ctx, url, 1<<20)
	if err != nil {
		return b, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != "kernel" && f[0] != "initrd") {
			continue
		}
		var url string
		var params []string
		for _, tok := range f[1:] {
			if tok == "||" {
				break
			}
			switch {
			case url == "" && strings.Contains(tok, "://"):
				url = tok
			case url != "":
				params = append(params, tok)
			}
		}
		if f[0] == "kernel" {
			b.kernel, b.params = url, params
		} else {
			b.initrd = url
		}
	}
	return b, nil
}

func httpGet(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

func download(ctx context.Context, url, dst string) error {
	b, err := httpGet(ctx, url, 256<<20)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
