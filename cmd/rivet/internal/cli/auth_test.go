package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/internal/testpki"
)

// secureConductor runs a conductor over TLS with http_basic users admin
// (role admin) and viewer (role reader); it returns the API URL and the
// CA file that verifies it.
func secureConductor(t *testing.T) (apiURL, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "rivet CLI test CA")
	leaf := ca.Issue(t, dir, "conductor", "127.0.0.1")
	caFile = ca.WriteCA(t, dir, "ca.pem")
	var users bytes.Buffer
	for _, u := range [][2]string{{"admin", "admin-pw"}, {"viewer", "viewer-pw"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "%s:%s\n", u[0], h)
	}
	userFile, rolesFile := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "roles")
	if err := os.WriteFile(userFile, users.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rolesFile, []byte("admin:admin\nviewer:reader\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := conductor.New(context.Background(), conductor.Config{
		Listen: "127.0.0.1:0", DBPath: filepath.Join(dir, "rivet.db"), Drivers: []power.Driver{drv},
		TLSCertFile: leaf.CertFile, TLSKeyFile: leaf.KeyFile,
		Auth:   auth.Config{Strategy: auth.HTTPBasic, UserFile: userFile, RolesFile: rolesFile},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("conductor: %v", err)
		}
	})
	return c.URL(), caFile
}

// rivetErr runs the CLI and returns its error output too.
func rivetErr(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = Run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCredentialsAndCAOverTLS(t *testing.T) {
	api, caFile := secureConductor(t)
	if !strings.HasPrefix(api, "https://") {
		t.Fatalf("API URL %q", api)
	}

	// From flags.
	mustRivet(t, "--url", api, "--cacert", caFile, "--username", "admin", "--password", "admin-pw",
		"node", "create", "--name", "n1", "--driver", "fake-hardware")

	// From the environment; flags after the subcommand work too.
	t.Setenv("RIVET_URL", api)
	t.Setenv("RIVET_CACERT", caFile)
	t.Setenv("RIVET_USERNAME", "viewer")
	t.Setenv("RIVET_PASSWORD", "viewer-pw")
	if out := mustRivet(t, "node", "list"); !strings.Contains(out, "n1") {
		t.Errorf("reader node list: %q", out)
	}
	if out := mustRivet(t, "node", "show", "n1", "--username", "admin", "--password", "admin-pw"); !strings.Contains(out, "enroll") {
		t.Errorf("node show: %q", out)
	}

	// The reader may not change anything: the API's 403 message.
	_, _, err := rivetErr(t, "node", "maintenance", "n1", "on")
	if err == nil || !strings.Contains(err.Error(), "Access was denied to the following resource") ||
		!strings.Contains(err.Error(), "(HTTP 403)") || ExitCode(err) != 1 {
		t.Errorf("reader maintenance on: %v", err)
	}

	// Wrong or missing credentials: 401, with a hint when none were given.
	_, _, err = rivetErr(t, "node", "list", "--password", "wrong")
	if err == nil || !strings.Contains(err.Error(), "Incorrect username or password (HTTP 401)") ||
		strings.Contains(err.Error(), "RIVET_USERNAME") {
		t.Errorf("wrong password: %v", err)
	}
	t.Setenv("RIVET_USERNAME", "")
	t.Setenv("RIVET_PASSWORD", "")
	_, _, err = rivetErr(t, "node", "list")
	if err == nil || !strings.Contains(err.Error(), "Authorization required (HTTP 401)") ||
		!strings.Contains(err.Error(), "set RIVET_USERNAME and RIVET_PASSWORD") {
		t.Errorf("no credentials: %v", err)
	}

	// Without the CA the conductor's certificate is refused, with a hint.
	t.Setenv("RIVET_CACERT", "")
	_, _, err = rivetErr(t, "node", "list", "--username", "admin", "--password", "admin-pw")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") ||
		!strings.Contains(err.Error(), "--cacert or RIVET_CACERT") {
		t.Errorf("no CA: %v", err)
	}
	// A CA file that is not one is an error before any request.
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = rivetErr(t, "node", "list", "--cacert", bad)
	if err == nil || !strings.Contains(err.Error(), "--cacert: CA bundle "+bad+": no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}

	mustRivet(t, "--cacert", caFile, "--username", "admin", "--password", "admin-pw", "node", "delete", "n1")
}

// TestPlainCredentialsWarning: credentials bound for http:// on a host
// that is not loopback get a warning (checked without sending anything).
func TestPlainCredentialsWarning(t *testing.T) {
	for _, tc := range []struct {
		url  string
		warn bool
	}{
		{"http://127.0.0.1:1", false}, {"http://localhost:1", false}, {"http://[::1]:1", false},
		{"https://192.0.2.1:1", false}, {"http://192.0.2.1:1", true},
	} {
		var errOut bytes.Buffer
		e := &env{url: tc.url, username: "u", stderr: &errOut}
		e.warnPlainCredentials()
		if got := strings.Contains(errOut.String(), "sending credentials unencrypted"); got != tc.warn {
			t.Errorf("%s: warned %v, want %v (%q)", tc.url, got, tc.warn, errOut.String())
		}
	}
}
