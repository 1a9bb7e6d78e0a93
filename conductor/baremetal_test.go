package conductor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// baremetalCLI runs Debian's `baremetal` (python3-ironicclient) against a
// conductor without authentication.
type baremetalCLI struct {
	t        *testing.T
	bin      string
	endpoint string
	home     string
}

func newBaremetalCLI(t *testing.T, endpoint string) *baremetalCLI {
	t.Helper()
	bin, err := exec.LookPath("baremetal")
	if err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatalf("baremetal CLI required (RIVET_REQUIRE_E2E=1) but not found: %v", err)
		}
		t.Skip("baremetal CLI (Debian python3-ironicclient) not installed; set RIVET_REQUIRE_E2E=1 to make this a failure")
	}
	return &baremetalCLI{t: t, bin: bin, endpoint: endpoint, home: t.TempDir()}
}

// run runs one command and returns stdout, stderr and the error.
func (b *baremetalCLI) run(args ...string) (string, string, error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--os-auth-type", "none", "--os-endpoint", b.endpoint}, args...)
	cmd := exec.CommandContext(ctx, b.bin, full...)
	// A private HOME: the client caches negotiated versions per endpoint.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.home, "LANG=C.UTF-8"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// json runs a command with -f json and decodes its output.
func (b *baremetalCLI) json(out any, args ...string) {
	b.t.Helper()
	stdout, stderr, err := b.run(append(args, "-f", "json")...)
	if err != nil {
		b.t.Fatalf("baremetal %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		b.t.Fatalf("baremetal %s: decode %q: %v", strings.Join(args, " "), stdout, err)
	}
}

func TestBaremetalCLICompatibility(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	bm := newBaremetalCLI(t, h.URL())

	var created map[string]any
	bm.json(&created, "node", "create", "--driver", "fake-hardware", "--name", "n1")
	uuid, _ := created["uuid"].(string)
	if uuid == "" || created["name"] != "n1" || created["provision_state"] != "enroll" || created["driver"] != "fake-hardware" {
		t.Fatalf("node create = %v", created)
	}

	var port map[string]any
	bm.json(&port, "port", "create", conductortest.MAC, "--node", uuid)
	if port["address"] != conductortest.MAC || port["node_uuid"] != uuid || port["pxe_enabled"] != true {
		t.Fatalf("port create = %v", port)
	}

	if _, stderr, err := bm.run("node", "manage", "n1"); err != nil {
		t.Fatalf("node manage: %v\n%s", err, stderr)
	}
	h.WaitState("n1", "manageable", 10*time.Second)

	var shown map[string]any
	bm.json(&shown, "node", "show", "n1")
	if shown["uuid"] != uuid || shown["provision_state"] != "manageable" || shown["power_state"] != "power off" ||
		shown["target_provision_state"] != nil {
		t.Fatalf("node show = %v", shown)
	}

	var list []map[string]any
	bm.json(&list, "node", "list")
	if len(list) != 1 || list[0]["UUID"] != uuid || list[0]["Name"] != "n1" ||
		list[0]["Provisioning State"] != "manageable" || list[0]["Power State"] != "power off" {
		t.Fatalf("node list = %v", list)
	}

	// Errors come back in Ironic's format, which the client unwraps.
	_, stderr, err := bm.run("node", "show", "nope")
	if err == nil || !strings.Contains(stderr, "Node nope could not be found. (HTTP 404)") {
		t.Fatalf("node show nope: err=%v stderr=%q", err, stderr)
	}

	// provide -> deploy (with a config drive) -> show -> undeploy, the
	// fake agent really downloading and checksumming the image.
	if _, stderr, err := bm.run("node", "provide", "n1", "--wait", "30"); err != nil {
		t.Fatalf("node provide: %v\n%s", err, stderr)
	}
	sum := sha256.Sum256(h.Image())
	if _, stderr, err := bm.run("node", "set", "n1",
		"--instance-info", "image_source="+h.URL()+"/images/disk.raw",
		"--instance-info", "image_os_hash_algo=sha256",
		"--instance-info", "image_os_hash_value="+hex.EncodeToString(sum[:]),
		"--instance-info", "image_disk_format=raw"); err != nil {
		t.Fatalf("node set: %v\n%s", err, stderr)
	}
	// The client takes the config drive from a file (gzipped, base64
	// encoded ISO) and sends its content.
	const configdrive = "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA" // gzip of a (non-empty) drive
	cdFile := filepath.Join(t.TempDir(), "configdrive")
	if err := os.WriteFile(cdFile, []byte(configdrive), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := bm.run("node", "deploy", "n1", "--config-drive", cdFile, "--wait", "60"); err != nil {
		t.Fatalf("node deploy: %v\n%s", err, stderr)
	}
	bm.json(&shown, "node", "show", "n1")
	ii, _ := shown["instance_info"].(map[string]any)
	if shown["provision_state"] != "active" || shown["power_state"] != "power on" || shown["last_error"] != nil ||
		ii["configdrive"] != "******" || ii["image_source"] != h.URL()+"/images/disk.raw" {
		t.Fatalf("node show after deploy = %v", shown)
	}
	if got := h.Agent().ImageInfo(); got == nil || got.Configdrive == nil || *got.Configdrive != configdrive {
		t.Fatalf("the agent did not get the config drive: %+v", got)
	}
	if _, stderr, err := bm.run("node", "undeploy", "n1", "--wait", "60"); err != nil {
		t.Fatalf("node undeploy: %v\n%s", err, stderr)
	}
	bm.json(&shown, "node", "show", "n1", "--fields", "provision_state", "power_state", "instance_info")
	if shown["provision_state"] != "available" || shown["power_state"] != "power off" || len(shown["instance_info"].(map[string]any)) != 0 {
		t.Fatalf("node show after undeploy = %v", shown)
	}

	// Maintenance round trip.
	if _, stderr, err := bm.run("node", "maintenance", "set", "n1", "--reason", "rack move"); err != nil {
		t.Fatalf("maintenance set: %v\n%s", err, stderr)
	}
	bm.json(&shown, "node", "show", "n1")
	if shown["maintenance"] != true || shown["maintenance_reason"] != "rack move" {
		t.Fatalf("node show in maintenance = %v", shown)
	}
	if _, stderr, err := bm.run("node", "maintenance", "unset", "n1"); err != nil {
		t.Fatalf("maintenance unset: %v\n%s", err, stderr)
	}
}
