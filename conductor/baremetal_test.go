package conductor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
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
	h := newHarness(t, fakeagent.Config{})
	h.start(h.config())
	bm := newBaremetalCLI(t, h.baseURL())

	var created map[string]any
	bm.json(&created, "node", "create", "--driver", "fake-hardware", "--name", "n1")
	uuid, _ := created["uuid"].(string)
	if uuid == "" || created["name"] != "n1" || created["provision_state"] != "enroll" || created["driver"] != "fake-hardware" {
		t.Fatalf("node create = %v", created)
	}

	var port map[string]any
	bm.json(&port, "port", "create", testMAC, "--node", uuid)
	if port["address"] != testMAC || port["node_uuid"] != uuid || port["pxe_enabled"] != true {
		t.Fatalf("port create = %v", port)
	}

	if _, stderr, err := bm.run("node", "manage", "n1"); err != nil {
		t.Fatalf("node manage: %v\n%s", err, stderr)
	}
	h.waitState("n1", "manageable", 10*time.Second)

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
}
