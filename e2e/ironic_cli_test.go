package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
)

// TestIronicCLI drives Debian's real Ironic with the rivet CLI (its
// gophercloud client, the microversion negotiated with Ironic 21.4):
// node create with Ironic's interfaces, port create, list and show,
// manage and provide --wait, deploy --wait to "active" with rivet-agent
// on a loop device, node history (API 1.78), and Rivet's own commands
// failing clearly on Ironic.
func TestIronicCLI(t *testing.T) {
	needIronic(t)
	files := &fileServer{fs: map[string][]byte{}}
	srv := httptest.NewServer(files)
	t.Cleanup(srv.Close)
	files.url = srv.URL
	files.put("/deploy.kernel", []byte("not a kernel: fake power never boots it\n"))
	files.put("/deploy.ramdisk", []byte("not a ramdisk\n"))
	img := ironicTestImage(t)
	files.put("/images/disk.raw", img)
	sum := sha256.Sum256(img)
	ir := startIronic(t, files)
	dir := t.TempDir()
	cli := goBuild(t, dir, "./cmd/rivet")
	agentBin := goBuild(t, dir, "./cmd/rivet-agent")

	rivet := func(args ...string) *exec.Cmd {
		cmd := exec.Command(cli, args...)
		cmd.Env = append(os.Environ(), "RIVET_URL="+ir.url)
		return cmd
	}
	run := func(args ...string) (string, error) {
		out, err := rivet(args...).CombinedOutput()
		t.Logf("rivet %s\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("rivet %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	const mac = "52:54:00:c1:1c:01"
	out := must("node", "create", "--name", "cli-node", "--driver", "manual-management",
		"--deploy-interface", "direct", "--boot-interface", "pxe", "--power-interface", "fake",
		"--management-interface", "noop", "--network-interface", "noop", "--automated-clean=false",
		"--driver-info", "deploy_kernel="+files.url+"/deploy.kernel",
		"--driver-info", "deploy_ramdisk="+files.url+"/deploy.ramdisk",
		"--property", "cpu_arch=x86_64", "--property", "memory_mb=4096", "--property", "local_gb=10",
		"--property", "capabilities=boot_mode:uefi")
	if !strings.Contains(out, "enroll") {
		t.Fatalf("node create did not show an enrolled node")
	}
	must("port", "create", mac, "--node", "cli-node")
	if out := must("port", "list"); !strings.Contains(out, mac) {
		t.Errorf("port list lacks %s", mac)
	}
	if out := must("node", "list"); !strings.Contains(out, "cli-node") {
		t.Errorf("node list lacks cli-node")
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(must("-o", "json", "node", "show", "cli-node")), &shown); err != nil {
		t.Fatalf("node show -o json: %v", err)
	}
	// The interfaces came through: Ironic's own fields, set by the CLI.
	for k, want := range map[string]string{"deploy_interface": "direct", "power_interface": "fake", "management_interface": "noop"} {
		if shown[k] != want {
			t.Errorf("%s = %v, want %s", k, shown[k], want)
		}
	}
	must("node", "manage", "cli-node", "--wait", "--timeout", "2m")
	must("node", "provide", "cli-node", "--wait", "--timeout", "2m")
	// Before deploy Ironic's deploy interface misses the image; the
	// interfaces manual-management lacks fail too (as baremetal shows).
	if out, err := run("node", "validate", "cli-node"); err == nil || !strings.Contains(out, "instance_info.image_source") {
		t.Errorf("node validate before deploy: %v", err)
	}

	// deploy --wait runs while the agent is started once Ironic waits
	// for it.
	loop := loopdev.New(t, 5<<30)
	deploy := rivet("node", "deploy", "cli-node", "--image", files.url+"/images/disk.raw",
		"--checksum", hex.EncodeToString(sum[:]), "--os-hash-algo", "sha256", "--wait", "--timeout", "8m")
	var deployOut bytes.Buffer
	deploy.Stdout, deploy.Stderr = &deployOut, &deployOut
	start := time.Now()
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	deployDone := make(chan error, 1)
	go func() { deployDone <- deploy.Wait() }()
	t.Cleanup(func() {
		if deploy.ProcessState == nil {
			deploy.Process.Kill()
			<-deployDone
		}
	})
	id, _ := shown["uuid"].(string)
	ir.waitState(t, id, "wait call-back", 2*time.Minute, nil)
	agent := startAgentProcess(t, agentBin,
		"--ipa-api-url="+ir.url, "--ipa-lookup-macs="+mac, "--ipa-block-devices="+loop.Path,
		"--ipa-listen-host=127.0.0.1", fmt.Sprintf("--ipa-listen-port=%d", freePort(t)),
		"--ipa-advertise-host=127.0.0.1", "--ipa-disk-wait-attempts=1")
	var derr error
	select {
	case derr = <-deployDone:
	case <-time.After(10 * time.Minute):
		t.Fatalf("rivet node deploy --wait still waiting after 10 minutes:\n%s\nagent:\n%s", deployOut.String(), agent.output())
	}
	t.Logf("rivet node deploy --wait (%.1f s):\n%s", time.Since(start).Seconds(), deployOut.String())
	if derr != nil {
		t.Fatalf("rivet node deploy --wait: %v\nagent:\n%s", derr, agent.output())
	}
	if !strings.Contains(deployOut.String(), "active") {
		t.Errorf("deploy --wait output does not end at active")
	}
	if n := ir.node(t, id); n["provision_state"] != "active" {
		t.Fatalf("node %v after deploy --wait", n["provision_state"])
	}
	checkWholeDiskImage(t, loop.Path, 5<<30, img)

	// Node history is API 1.78, which the CLI negotiates with Ironic.
	must("node", "history", "cli-node")
	if _, err := json.Marshal(must("-o", "json", "node", "history", "cli-node")); err != nil {
		t.Fatal(err)
	}
	// Rivet's own routes are not Ironic's: a clear error, not a crash.
	if out, err := run("node", "logs", "cli-node"); err == nil || !strings.Contains(out, "a route of the Rivet conductor") {
		t.Errorf("node logs against Ironic: %v\n%s", err, out)
	}
	must("node", "power", "cli-node", "off")
	must("node", "undeploy", "cli-node", "--wait", "--timeout", "3m")
	must("node", "delete", "cli-node")
	if out := must("node", "list"); strings.Contains(out, "cli-node") {
		t.Errorf("node list still shows the deleted node")
	}
}
