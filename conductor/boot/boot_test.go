package boot

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// nodes is an in-memory Nodes keyed by MAC.
type nodes map[string]*store.Node

func (m nodes) GetNode(_ context.Context, ident string) (*store.Node, error) {
	for _, n := range m {
		if n.UUID == ident || n.Name == ident {
			return n, nil
		}
	}
	return nil, errdefs.NotFound("Node %s could not be found.", ident)
}

func (m nodes) NodeByMACs(_ context.Context, macs []string) (*store.Node, error) {
	for _, mac := range macs {
		if n, ok := m[mac]; ok {
			return n, nil
		}
	}
	return nil, errdefs.NotFound("no node")
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestScriptsAndFiles(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("KERNEL-BYTES"), 0o644)
	os.WriteFile(initrd, []byte("INITRD-BYTES"), 0o644)
	deploying := &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", ProvisionState: statemachine.DeployWait}
	active := &store.Node{UUID: "0b8f2d4c-6e1a-4c3b-8d5f-7a9e1c2b3d44", ProvisionState: statemachine.Active}
	remote := &store.Node{UUID: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e66", ProvisionState: statemachine.Cleaning,
		DriverInfo:         map[string]any{"deploy_kernel": "http://images.example/k", "deploy_ramdisk": "http://images.example/r"},
		DriverInternalInfo: map[string]any{"ramdisk_kernel_params": []any{"ipa-inspection-callback-url=http://10.0.0.1:6385/v1/continue_inspection", "bad param"}}}
	h, err := New(Config{Nodes: nodes{"52:54:00:12:34:56": deploying, "52:54:00:00:00:02": active,
		"52:54:00:00:00:03": remote},
		APIURL: "http://10.0.0.1:6385", DeployKernel: kernel, DeployRamdisk: initrd})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/boot/", http.StripPrefix("/boot", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	st, body := get(t, srv.URL+"/boot/boot.ipxe")
	if st != 200 || !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, "chain "+srv.URL+"/boot/${mac}.ipxe || exit") {
		t.Fatalf("boot.ipxe = %d %q", st, body)
	}

	// The pxelinux form and upper case name the same NIC.
	for _, name := range []string{"52:54:00:12:34:56", "01-52-54-00-12-34-56", "52-54-00-12-34-56", "52:54:00:12:34:56"} {
		st, body = get(t, srv.URL+"/boot/"+strings.ToUpper(name)+".ipxe")
		want := []string{
			"#!ipxe\n",
			"kernel --name deploy_kernel " + srv.URL + "/boot/" + deploying.UUID + "/deploy_kernel ",
			" ipa-api-url=http://10.0.0.1:6385 ",
			" BOOTIF=52:54:00:12:34:56 ",
			"initrd --name deploy_ramdisk " + srv.URL + "/boot/" + deploying.UUID + "/deploy_ramdisk",
			"\nboot\n",
		}
		for _, w := range want {
			if st != 200 || !strings.Contains(body, w) {
				t.Fatalf("%s.ipxe = %d, lacks %q:\n%s", name, st, w, body)
			}
		}
	}
	if st, body = get(t, srv.URL+"/boot/"+deploying.UUID+"/deploy_kernel"); st != 200 || body != "KERNEL-BYTES" {
		t.Fatalf("kernel = %d %q", st, body)
	}
	if st, body = get(t, srv.URL+"/boot/"+deploying.UUID+"/deploy_ramdisk"); st != 200 || body != "INITRD-BYTES" {
		t.Fatalf("ramdisk = %d %q", st, body)
	}

	// A deployed node boots its disk.
	if st, body = get(t, srv.URL+"/boot/52:54:00:00:00:02.ipxe"); st != 200 || !strings.Contains(body, "\nexit\n") || strings.Contains(body, "kernel") {
		t.Fatalf("active node script = %d %q", st, body)
	}
	// Deploy files given as URLs are fetched from there.
	if st, body = get(t, srv.URL+"/boot/52:54:00:00:00:03.ipxe"); st != 200 ||
		!strings.Contains(body, "kernel --name deploy_kernel http://images.example/k ") ||
		!strings.Contains(body, "initrd --name deploy_ramdisk http://images.example/r") {
		t.Fatalf("remote files script = %d %q", st, body)
	}
	// The engine's extra parameters for this boot follow the agent's; one
	// with a space would break the command line and is left out.
	if !strings.Contains(body, " BOOTIF=52:54:00:00:00:03 ipa-inspection-callback-url=http://10.0.0.1:6385/v1/continue_inspection initrd=deploy_ramdisk") ||
		strings.Contains(body, "bad param") {
		t.Fatalf("extra kernel params in %q", body)
	}
	for _, p := range []string{"/boot/52:54:00:99:99:99.ipxe", "/boot/nonsense.ipxe", "/boot/" + deploying.UUID + "/etc-passwd",
		"/boot/nope/deploy_kernel"} {
		if st, _ := get(t, srv.URL+p); st != 404 {
			t.Errorf("GET %s = %d, want 404", p, st)
		}
	}
}

func TestParseMAC(t *testing.T) {
	for in, want := range map[string]string{"AA:BB:CC:DD:EE:FF": "aa:bb:cc:dd:ee:ff",
		"01-aa-bb-cc-dd-ee-ff": "aa:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-ff": "aa:bb:cc:dd:ee:ff"} {
		if got, ok := ParseMAC(in); !ok || got != want {
			t.Errorf("ParseMAC(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "aa:bb:cc", "zz:bb:cc:dd:ee:ff", "02-aa-bb-cc-dd-ee-ff"} {
		if _, ok := ParseMAC(in); ok {
			t.Errorf("ParseMAC(%q) accepted", in)
		}
	}
}

func TestFirmwareRoute(t *testing.T) {
	fw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "firmware "+r.URL.Path)
	})
	h, err := New(Config{Nodes: nodes{}, Firmware: fw})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/firmware/snponly.efi", nil))
	if rec.Code != 200 || rec.Body.String() != "firmware /snponly.efi" {
		t.Fatalf("GET firmware/snponly.efi = %d %q", rec.Code, rec.Body.String())
	}
}

// TestKernelAppendParams: a node's kernel_append_params replace the
// configured defaults, instance_info before driver_info as in Ironic, with
// %default% standing for the defaults; a value that is not a string or
// holds a control character fails the script instead of breaking it.
func TestKernelAppendParams(t *testing.T) {
	h, err := New(Config{Nodes: nodes{}, APIURL: "http://10.0.0.1:6385", DeployKernel: "/k", DeployRamdisk: "/r",
		KernelParams: []string{"nofb", "vga=normal"}})
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:12:34:56"
	for _, c := range []struct {
		name                   string
		instanceInfo, drvInfo  map[string]any
		want, notWant, wantErr string
	}{
		{name: "defaults", want: " text nofb vga=normal ipa-api-url="},
		{name: "driver_info replaces", drvInfo: map[string]any{"kernel_append_params": "console=ttyS0"},
			want: " text console=ttyS0 ipa-api-url=", notWant: "nofb"},
		{name: "%default% kept", drvInfo: map[string]any{"kernel_append_params": "%default%  console=ttyS0,115200"},
			want: " text nofb vga=normal console=ttyS0,115200 ipa-api-url="},
		{name: "instance_info first", instanceInfo: map[string]any{"kernel_append_params": "quiet"},
			drvInfo: map[string]any{"kernel_append_params": "console=ttyS0"}, want: " text quiet ipa-api-url=", notWant: "ttyS0"},
		{name: "null skipped", instanceInfo: map[string]any{"kernel_append_params": nil},
			drvInfo: map[string]any{"kernel_append_params": "console=ttyS0"}, want: " text console=ttyS0 ipa-api-url="},
		{name: "not a string", drvInfo: map[string]any{"kernel_append_params": 42.0}, wantErr: "not a string"},
		{name: "newline", drvInfo: map[string]any{"kernel_append_params": "a\nchain http://evil/x"}, wantErr: "control characters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", ProvisionState: statemachine.DeployWait,
				InstanceInfo: c.instanceInfo, DriverInfo: c.drvInfo}
			s, err := h.Script(n, mac, "http://10.0.0.1:6385/boot")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Script = %q, %v; want an error about %s", s, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(s, c.want) || (c.notWant != "" && strings.Contains(s, c.notWant)) {
				t.Fatalf("script lacks %q (or has %q):\n%s", c.want, c.notWant, s)
			}
		})
	}
}

// TestNodeDeployFilesAreConfined: a node's own deploy_kernel or
// deploy_ramdisk is served only from the allowed directories, as a
// regular file reached without leaving them; /etc/shadow, the database,
// /dev/zero and symbolic links out are refused with a 404 and nothing of
// them is sent. The conductor's own defaults are served wherever they are.
func TestNodeDeployFilesAreConfined(t *testing.T) {
	base := t.TempDir()
	allowed, state := filepath.Join(base, "images"), filepath.Join(base, "state")
	os.MkdirAll(allowed, 0o750)
	os.MkdirAll(state, 0o750)
	db := filepath.Join(state, "rivet.db")
	os.WriteFile(db, []byte("SQLite format 3 ipmi_password=hunter2"), 0o600)
	os.WriteFile(filepath.Join(allowed, "kernel"), []byte("NODE-KERNEL"), 0o644)
	os.Symlink(db, filepath.Join(allowed, "db"))
	os.Symlink("/etc/shadow", filepath.Join(allowed, "shadow"))
	os.Link(db, filepath.Join(allowed, "db-hardlink"))
	defKernel := filepath.Join(state, "default-kernel") // outside the allowed directory: the operator's
	os.WriteFile(defKernel, []byte("DEFAULT-KERNEL"), 0o644)
	files, err := hostpath.New(hostpath.Config{Allowed: []string{allowed}, Protected: []string{db}})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	n := &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", ProvisionState: statemachine.DeployWait,
		DriverInfo: map[string]any{}}
	h, err := New(Config{Nodes: nodes{"52:54:00:12:34:56": n}, DeployKernel: defKernel, DeployRamdisk: defKernel, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/boot", h))
	defer srv.Close()
	url := srv.URL + "/boot/" + n.UUID + "/deploy_kernel"
	for _, tc := range []struct {
		value      any
		status     int
		body       string
		noneServed bool
	}{
		{nil, 200, "DEFAULT-KERNEL", false},
		{defKernel, 200, "DEFAULT-KERNEL", false},
		{filepath.Join(allowed, "kernel"), 200, "NODE-KERNEL", false},
		{"file://" + filepath.Join(allowed, "kernel"), 200, "NODE-KERNEL", false},
		{"/etc/shadow", 404, "", true},
		{"file:///etc/shadow", 404, "", true},
		{db, 404, "", true},
		{"/dev/zero", 404, "", true},
		{filepath.Join(allowed, "db"), 404, "", true},
		{filepath.Join(allowed, "shadow"), 404, "", true},
		{filepath.Join(allowed, "db-hardlink"), 404, "", true},
		{filepath.Join(allowed, "..", "state", "rivet.db"), 404, "", true},
		{"kernel", 404, "", true},
	} {
		if tc.value == nil {
			delete(n.DriverInfo, "deploy_kernel")
		} else {
			n.DriverInfo["deploy_kernel"] = tc.value
		}
		st, body := get(t, url)
		if st != tc.status || (tc.body != "" && body != tc.body) {
			t.Errorf("deploy_kernel %v: %d %q, want %d %q", tc.value, st, body, tc.status, tc.body)
		}
		if tc.noneServed && (strings.Contains(body, "SQLite") || strings.Contains(body, "root:")) {
			t.Errorf("deploy_kernel %v: served %q", tc.value, body)
		}
	}
	// Without allowed directories a node names no host file at all.
	h2, _ := New(Config{Nodes: nodes{"52:54:00:12:34:56": n}, DeployKernel: defKernel, DeployRamdisk: defKernel})
	n.DriverInfo["deploy_kernel"] = filepath.Join(allowed, "kernel")
	rec := httptest.NewRecorder()
	h2.ServeHTTP(rec, httptest.NewRequest("GET", "/"+n.UUID+"/deploy_kernel", nil))
	if rec.Code != 404 {
		t.Errorf("node file without allowed directories: %d", rec.Code)
	}
}
