// Package vmtest holds what tests that boot QEMU share: the repository's
// fixtures (build/kernel from make kernel), the rule that turns a missing
// tool into a skip or, under RIVET_REQUIRE_E2E=1, a failure, and a QEMU
// runner that streams the serial console into the test log.
package vmtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RequireEnv is the environment variable that turns skips for missing VM
// tools or fixtures into failures (make test sets it).
const RequireEnv = "RIVET_REQUIRE_E2E"

// Unavailable skips the test with the reason, or fails it when
// RIVET_REQUIRE_E2E=1.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("required by "+RequireEnv+"=1: "+format, args...)
		return
	}
	t.Skipf(format, args...)
}

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// RepoRoot returns the directory of the repository's go.mod, found by
// walking up from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() { root, rootErr = findRepoRoot() })
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return root
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vmtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Kernel returns build/kernel/vmlinuz (made by make kernel).
func Kernel(t testing.TB) string {
	t.Helper()
	return fixture(t, filepath.Join("build", "kernel", "vmlinuz"))
}

// ModulesDir returns build/kernel/modules, the kernel-modules tree made by
// make kernel.
func ModulesDir(t testing.TB) string {
	t.Helper()
	return fixture(t, filepath.Join("build", "kernel", "modules"))
}

func fixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), rel)
	if _, err := os.Stat(p); err != nil {
		Unavailable(t, "%s missing (run make kernel): %v", rel, err)
	}
	return p
}

// QEMUBinary is the emulator the tests run.
const QEMUBinary = "qemu-system-x86_64"

// QEMU returns the path of qemu-system-x86_64.
func QEMU(t testing.TB) string {
	t.Helper()
	return Tool(t, QEMUBinary)
}

// Tool returns the path of a host program the test needs (make deps
// installs them).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not installed (run make deps): %v", name, err)
	}
	return p
}

// OVMF files of Debian's ovmf package (4 MiB flash layout).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// OVMF returns the firmware code file and a private copy of the variable
// store for one VM.
func OVMF(t testing.TB) (code, vars string) {
	t.Helper()
	for _, p := range []string{OVMFCode, OVMFVars} {
		if _, err := os.Stat(p); err != nil {
			Unavailable(t, "OVMF not installed (run make deps): %v", err)
		}
	}
	b, err := os.ReadFile(OVMFVars)
	if err != nil {
		t.Fatal(err)
	}
	vars = filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return OVMFCode, vars
}
