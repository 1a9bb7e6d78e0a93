package boot

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// FuzzParseMAC: what ParseMAC accepts comes back in the canonical form,
// which it accepts again unchanged.
func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:12:34:56", "01-52-54-00-12-34-56", "AA-BB-CC-DD-EE-FF", "52:54:00:12:34", "01-zz"} {
		f.Add(s)
	}
	canonical := regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
	f.Fuzz(func(t *testing.T, s string) {
		mac, ok := ParseMAC(s)
		if !ok {
			return
		}
		if !canonical.MatchString(mac) {
			t.Fatalf("ParseMAC(%q) = %q", s, mac)
		}
		if again, ok := ParseMAC(mac); !ok || again != mac {
			t.Fatalf("ParseMAC(%q) = %q, then %q %v", s, mac, again, ok)
		}
	})
}

// FuzzBootPaths: whatever path firmware asks for, the boot handler
// answers a script, one of the two deploy files, a redirect or 404 —
// never a 5xx, and never a byte of a file outside the allowed directory,
// whatever the node's deploy files are set to.
func FuzzBootPaths(f *testing.F) {
	base := f.TempDir()
	allowed, outside := filepath.Join(base, "images"), filepath.Join(base, "state")
	os.MkdirAll(allowed, 0o750)
	os.MkdirAll(outside, 0o750)
	secret := filepath.Join(outside, "rivet.db")
	os.WriteFile(secret, []byte("SECRET"), 0o600)
	os.WriteFile(filepath.Join(allowed, "kernel"), []byte("kernel"), 0o644)
	os.Symlink(secret, filepath.Join(allowed, "link"))
	files, err := hostpath.New(hostpath.Config{Allowed: []string{allowed}, Protected: []string{secret}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { files.Close() })
	n := &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", ProvisionState: statemachine.DeployWait,
		DriverInfo: map[string]any{}}
	h, err := New(Config{Nodes: nodes{"52:54:00:12:34:56": n}, DeployKernel: filepath.Join(allowed, "kernel"),
		DeployRamdisk: filepath.Join(allowed, "kernel"), Files: files})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"/boot.ipxe", "/52:54:00:12:34:56.ipxe", "/01-52-54-00-12-34-56.ipxe", "/" + n.UUID + "/deploy_kernel",
		"/" + n.UUID + "/../../state/rivet.db", "/firmware/x", "/%2e%2e/state/rivet.db",
	} {
		f.Add(s, secret)
		f.Add(s, "file://"+filepath.Join(allowed, "link"))
		f.Add(s, filepath.Join(allowed, "..", "state", "rivet.db"))
	}
	f.Fuzz(func(t *testing.T, path, deployKernel string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n#?") {
			return
		}
		n.DriverInfo["deploy_kernel"] = deployKernel
		req, err := http.NewRequest("GET", "http://c1"+path, nil)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %q (deploy_kernel %q): %d %s", path, deployKernel, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "SECRET") {
			t.Fatalf("GET %q (deploy_kernel %q) served the file outside", path, deployKernel)
		}
	})
}
