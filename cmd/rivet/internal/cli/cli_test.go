package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/provision"
)

// testConductor runs a conductor in-process with the fake-hardware driver
// whose nodes boot fake agents; it serves a 2 MiB image and returns the
// conductor URL, the image URL and its SHA-256.
func testConductor(t *testing.T, agentCfg fakeagent.Config) (apiURL, imageURL, sum string) {
	t.Helper()
	dir := t.TempDir()
	img := bytes.Repeat([]byte("rivet-cli-image!"), 128<<10)
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	drv, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := conductor.New(context.Background(), conductor.Config{
		Listen: "127.0.0.1:0", DBPath: filepath.Join(dir, "rivet.db"), ImageDir: dir,
		Drivers: []power.Driver{drv},
		Provision: provision.Config{CheckInterval: 50 * time.Millisecond, ProgressPollInterval: 30 * time.Millisecond,
			PowerOffInterval: 10 * time.Millisecond, PowerStateInterval: 5 * time.Millisecond,
			DisableAutomatedClean: true}, // provide goes straight to available
		Agent:  agentclient.Config{RetryDelay: 10 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	machines := fakeagent.NewMachines(drv, agentCfg, c.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("conductor: %v", err)
		}
		machines.Close()
	})
	s := sha256.Sum256(img)
	return c.URL(), c.URL() + "/images/disk.raw", hex.EncodeToString(s[:])
}

// rivet runs the CLI and returns its output.
func rivet(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := Run(ctx, args, &out, &errOut)
	t.Logf("rivet %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	return out.String(), err
}

func mustRivet(t *testing.T, args ...string) string {
	t.Helper()
	out, err := rivet(t, args...)
	if err != nil {
		t.Fatalf("rivet %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestDeployWithProgress(t *testing.T) {
	api, image, sum := testConductor(t, fakeagent.Config{WriteDuration: time.Second, WriteChunks: 8})
	t.Setenv("RIVET_URL", api)
	fast := "--poll-interval=20ms"

	out := mustRivet(t, "-o", "json", "node", "create", "--name", "n1", "--driver", "fake-hardware",
		"--driver-info", "note=lab rack 3", "--property", "memory_mb=4096")
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	if created["provision_state"] != "enroll" || created["properties"].(map[string]any)["memory_mb"] != float64(4096) ||
		created["driver_info"].(map[string]any)["note"] != "lab rack 3" {
		t.Fatalf("created node = %v", created)
	}
	if out := mustRivet(t, "port", "create", "52:54:00:12:34:56", "--node", "n1"); !strings.Contains(out, "52:54:00:12:34:56") {
		t.Fatalf("port create output %q", out)
	}
	if out := mustRivet(t, "node", "manage", "n1", "--wait", fast); !strings.Contains(out, "n1: manageable after") {
		t.Fatalf("manage output %q", out)
	}
	mustRivet(t, "node", "provide", "n1", "--wait", fast)

	out = mustRivet(t, "node", "deploy", "n1", "--image", image, "--checksum", sum, "--os-hash-algo", "sha256",
		"--disk-format", "raw", "--all-matching-disks", "--wait", fast, "--timeout", "30s")
	for _, want := range []string{"n1: deploying (target active)", "n1: wait call-back (target active)",
		"n1: image write ", "of 2.0 MiB", "n1: image done 2.0 MiB of 2.0 MiB (100%)", "n1: active after"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy --wait output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "n1: image write ") < 2 || strings.Count(out, "n1: deploying") != 1 {
		t.Errorf("want several live progress lines, got:\n%s", out)
	}
	var shown struct {
		InstanceInfo map[string]any `json:"instance_info"`
	}
	if err := json.Unmarshal([]byte(mustRivet(t, "-o", "json", "node", "show", "n1")), &shown); err != nil ||
		shown.InstanceInfo["rivet_target_disks"] != "all_matching" {
		t.Errorf("--all-matching-disks: instance_info = %v (%v)", shown.InstanceInfo, err)
	}

	if out := mustRivet(t, "node", "list"); !strings.Contains(out, "n1") || !strings.Contains(out, "active") ||
		!strings.Contains(out, "power on") {
		t.Errorf("node list output %q", out)
	}
	if out := mustRivet(t, "node", "show", "n1"); !strings.Contains(out, "image_source") || !strings.Contains(out, "done 2.0 MiB") {
		t.Errorf("node show output %q", out)
	}
	var ports []map[string]any
	if err := json.Unmarshal([]byte(mustRivet(t, "port", "list", "-o", "json")), &ports); err != nil || len(ports) != 1 {
		t.Fatalf("port list json: %v %v", ports, err)
	}
	if out := mustRivet(t, "node", "undeploy", "n1", "--wait", fast); !strings.Contains(out, "n1: available after") {
		t.Errorf("undeploy output %q", out)
	}
}

func TestDeployFailureExitsNonZero(t *testing.T) {
	api, image, sum := testConductor(t, fakeagent.Config{WriteError: "disk /dev/vda vanished"})
	mustRivet(t, "--url", api, "node", "create", "--name", "n1", "--driver", "fake-hardware")
	mustRivet(t, "--url", api, "port", "create", "52:54:00:12:34:56", "--node", "n1")
	mustRivet(t, "--url", api, "node", "manage", "n1", "--wait", "--poll-interval=20ms")
	mustRivet(t, "--url", api, "node", "provide", "n1", "--wait", "--poll-interval=20ms")
	_, err := rivet(t, "--url", api, "node", "deploy", "n1", "--image", image, "--checksum", sum,
		"--os-hash-algo", "sha256", "--wait", "--poll-interval=20ms")
	if err == nil || !strings.Contains(err.Error(), "deploy failed: Deploy step deploy.write_image failed") ||
		!strings.Contains(err.Error(), "disk /dev/vda vanished") {
		t.Fatalf("deploy error = %v", err)
	}
	// An API refusal is reported with Ironic's message.
	_, err = rivet(t, "--url", api, "node", "provide", "n1")
	if err == nil || !strings.Contains(err.Error(), `can not be performed on node`) || !strings.Contains(err.Error(), "(HTTP 400)") {
		t.Fatalf("provide error = %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"node"}, {"node", "fly"}, {"node", "show"}, {"node", "create"},
		{"-o", "yaml", "node", "list"}} {
		if _, err := rivet(t, args...); !errors.Is(err, ErrUsage) {
			t.Errorf("rivet %v: %v, want a usage error", args, err)
		}
	}
}

func TestFormatProgress(t *testing.T) {
	if got := bytesIEC(512 << 20); got != "512.0 MiB" {
		t.Errorf("bytesIEC = %q", got)
	}
	if got := bytesIEC(1000); got != "1000 B" {
		t.Errorf("bytesIEC = %q", got)
	}
}
