package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/provision"
)

// enrolled creates node n1 with its port and makes it available.
func enrolled(t *testing.T) {
	t.Helper()
	fast := "--poll-interval=20ms"
	mustRivet(t, "node", "create", "--name", "n1", "--driver", "fake-hardware")
	mustRivet(t, "port", "create", "52:54:00:12:34:56", "--node", "n1")
	mustRivet(t, "node", "manage", "n1", "--wait", fast)
	mustRivet(t, "node", "provide", "n1", "--wait", fast)
}

// TestNodeHistory lists a node's history after a deploy and a failure,
// as a table and as JSON, and shows one event.
func TestNodeHistory(t *testing.T) {
	api, image, sum := testConductor(t, fakeagent.Config{})
	t.Setenv("RIVET_URL", api)
	enrolled(t)
	mustRivet(t, "node", "maintenance", "n1", "on", "--reason", "cabling")
	mustRivet(t, "node", "maintenance", "n1", "off")
	mustRivet(t, "node", "deploy", "n1", "--image", image, "--checksum", sum, "--os-hash-algo", "sha256", "--wait", "--poll-interval=20ms")

	out := mustRivet(t, "node", "history", "n1", "--utc")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[0], "SEVERITY") || !strings.Contains(lines[0], "USER") {
		t.Fatalf("history header %q", lines[0])
	}
	for _, want := range []string{"Node created in enroll (driver fake-hardware)", "enroll → verifying (target manageable)",
		"Maintenance set: cabling", "Maintenance cleared", "available → deploying (target active)", "deploying → active; deployed in"} {
		if !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(lines[1], "Z ") || !strings.Contains(lines[1], "INFO") || !strings.Contains(lines[1], "provisioning") {
		t.Errorf("first event line %q", lines[1])
	}
	if got := mustRivet(t, "node", "history", "n1", "--last", "1"); !strings.Contains(got, "deployed in") || strings.Count(got, "\n") != 2 {
		t.Errorf("--last 1:\n%s", got)
	}

	var evs []map[string]any
	if err := json.Unmarshal([]byte(mustRivet(t, "-o", "json", "node", "history", "n1")), &evs); err != nil || len(evs) < 6 {
		t.Fatalf("history json: %v %v", evs, err)
	}
	first := evs[0]
	for _, k := range []string{"uuid", "created_at", "severity", "event_type", "event", "conductor", "user", "links"} {
		if _, ok := first[k]; !ok {
			t.Errorf("history json event lacks %q: %v", k, first)
		}
	}
	one := mustRivet(t, "node", "history", "n1", first["uuid"].(string))
	if !strings.Contains(one, "Node created in enroll") || !strings.Contains(one, "conductor") {
		t.Errorf("one event:\n%s", one)
	}
	if _, err := rivet(t, "node", "history", "n1", "0b6c9f0e-8d4c-4e4e-9a0c-2b7d8e9f0a11"); ExitCode(err) != 1 ||
		!strings.Contains(err.Error(), "could not be found") {
		t.Errorf("unknown event: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNodeLogs follows a deploy's agent log from before the agent boots
// until it is powered off, then shows, lists and saves the archive the
// conductor collected.
func TestNodeLogs(t *testing.T) {
	api, image, sum := testConductorWith(t, fakeagent.Config{WriteDuration: 300 * time.Millisecond}, func(c *conductor.Config) {
		c.Provision.LogsCollect = provision.LogsAlways
	})
	t.Setenv("RIVET_URL", api)
	enrolled(t)
	if _, err := rivet(t, "node", "logs", "n1"); err == nil || !strings.Contains(err.Error(), "no agent logs collected") {
		t.Fatalf("logs before any: %v", err)
	}
	if _, err := rivet(t, "node", "logs", "n1", "--follow"); err == nil || !strings.Contains(err.Error(), "no agent runs on the node") {
		t.Fatalf("follow of an available node: %v", err)
	}

	// Follow from before the deploy: the command waits for the agent.
	mustRivet(t, "node", "deploy", "n1", "--image", image, "--checksum", sum, "--os-hash-algo", "sha256")
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := Run(ctx, []string{"node", "logs", "n1", "--follow", "--poll-interval=10ms"}, &out, &errOut)
	t.Logf("rivet node logs --follow:\n%s%s", out.String(), errOut.String())
	if err != nil {
		t.Fatalf("follow: %v", err)
	}
	for _, want := range []string{"fakeagent: command deploy.execute_deploy_step", "fakeagent: command log.collect_system_logs"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("followed log lacks %q", want)
		}
	}
	if !strings.Contains(errOut.String(), "log stream ended") {
		t.Errorf("the end of the stream is not said: %q", errOut.String())
	}
	mustRivet(t, "node", "watch", "n1", "--poll-interval=20ms")

	shown, stderr, err := rivetErr(t, "node", "logs", "n1")
	if err != nil || shown != "fake agent journal\n" || !strings.Contains(stderr, "files: journal (") || !strings.Contains(stderr, "_deploy.tar.gz") {
		t.Fatalf("logs: %v\nstdout %q\nstderr %q", err, shown, stderr)
	}
	listed := mustRivet(t, "node", "logs", "n1", "--list")
	if !strings.Contains(listed, "ARCHIVE") || !strings.Contains(listed, "deploy") || !strings.Contains(listed, "journal") {
		t.Errorf("--list:\n%s", listed)
	}
	if _, err := rivet(t, "node", "logs", "n1", "--file", "dmesg"); err == nil || !strings.Contains(err.Error(), `no file "dmesg"`) {
		t.Errorf("--file of a missing file: %v", err)
	}
	saved := filepath.Join(t.TempDir(), "logs.tar.gz")
	mustRivet(t, "node", "logs", "n1", "--save", saved)
	f, err := os.Open(saved)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	if h, err := tr.Next(); err != nil || h.Name != "journal" {
		t.Fatalf("saved archive: %v %v", h, err)
	}
	if b, _ := io.ReadAll(tr); string(b) != "fake agent journal\n" {
		t.Fatalf("saved journal %q", b)
	}
	if _, err := rivet(t, "node", "logs", "n1", "--follow", "--list"); ExitCode(err) != 2 {
		t.Errorf("--follow with --list: %v", err)
	}
}

// TestCompletionAndHelp: shell completion scripts for bash, zsh and fish,
// node names completed from the API, and --help on every command.
func TestCompletionAndHelp(t *testing.T) {
	api, _, _ := testConductor(t, fakeagent.Config{})
	t.Setenv("RIVET_URL", api)
	mustRivet(t, "node", "create", "--name", "rack1-node7", "--driver", "fake-hardware")
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef rivet", "fish": "complete -c rivet"} {
		if out := mustRivet(t, "completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s lacks %q", shell, want)
		}
	}
	out := mustRivet(t, "__complete", "node", "deploy", "rack")
	if !strings.Contains(out, "rack1-node7\tenroll") {
		t.Errorf("node name completion:\n%s", out)
	}
	out = mustRivet(t, "__complete", "node", "power", "rack1-node7", "")
	if !strings.Contains(out, "soft-reboot") {
		t.Errorf("power word completion:\n%s", out)
	}
	for _, args := range [][]string{{"--help"}, {"node", "--help"}, {"node", "history", "--help"}, {"node", "logs", "-h"},
		{"port", "create", "--help"}, {"help", "node", "timings"}} {
		out := mustRivet(t, args...)
		if !strings.Contains(out, "Usage:") {
			t.Errorf("rivet %v: no usage:\n%s", args, out)
		}
	}
}

// TestRivetRouteHint: the answers a plain Ironic gives to Rivet's agent-log
// routes get the hint; a missing node, refused credentials and other
// errors do not.
func TestRivetRouteHint(t *testing.T) {
	for _, tc := range []struct {
		err  error
		hint bool
	}{
		{&client.Error{Status: 500, Message: "NodesController.get_one() takes from 2 to 3 positional arguments but 4 were given"}, true},
		{&client.Error{Status: 404, Message: "Node n9 could not be found."}, false},
		{&client.Error{Status: 404, Message: "The resource could not be found."}, true},
		{&client.Error{Status: 404, Message: "Not Found"}, true},
		{&client.Error{Status: 405, Message: "Method Not Allowed"}, true},
		{&client.Error{Status: 401, Message: "Unauthorized"}, false},
		{fmt.Errorf("GET /v1/x: %w", &client.Error{Status: 403, Message: "Forbidden"}), false},
		{errors.New("connection refused"), false},
	} {
		if got := rivetRouteHint(tc.err) != ""; got != tc.hint {
			t.Errorf("%v: hint %v, want %v", tc.err, got, tc.hint)
		}
	}
}
