package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/kernelcmdline"
)

// TestKernelCommandLine parses a command line as Ironic's PXE boot builds
// it, plus the parameters the agent added for inventory, cleaning, TLS and
// inspection.
func TestKernelCommandLine(t *testing.T) {
	line := `selinux=0 troubleshoot=0 text nofb nomodeset vga=normal ipa-api-url=http://192.0.2.1:6385,http://192.0.2.2:6385 ipa-debug=1 ` +
		`BOOTIF=01-52-54-00-12-34-56 ipa-disk-wait-attempts=2 ipa-disk-wait-delay=0.5 ipa-hardware-initialization-delay=1 ` +
		`ipa-inspection-callback-url=http://192.0.2.1:5050/v1/continue ipa-inspection-collectors=default,logs ipa-enable-auto-tls=0 ` +
		`ipa-tls-certificate-curve=p256 ipa-guard-special-filesystems=false ipa-ignore-bootloader-failure initrd=ramdisk`
	params, err := kernelcmdline.Parse(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if cfg.DiskWaitAttempts != 10 || cfg.DiskWaitDelay != 3*time.Second || !cfg.EnableAutoTLS || !cfg.GuardSpecialFilesystems || cfg.TLSCertificateCurve != "p384" {
		t.Fatalf("defaults %+v", cfg)
	}
	if err := cfg.ApplyKernelParams(params); err != nil {
		t.Fatal(err)
	}
	if len(cfg.APIURLs) != 2 || !cfg.Debug || cfg.BootIF != "01-52-54-00-12-34-56" || cfg.DiskWaitAttempts != 2 ||
		cfg.DiskWaitDelay != 500*time.Millisecond || cfg.HardwareInitDelay != time.Second ||
		cfg.InspectionCallbackURL != "http://192.0.2.1:5050/v1/continue" || strings.Join(cfg.InspectionCollectors, ",") != "default,logs" ||
		cfg.EnableAutoTLS || cfg.TLSCertificateCurve != "p256" || cfg.GuardSpecialFilesystems {
		t.Fatalf("parsed %+v", cfg)
	}
	// A bare boolean (no "=") is ignored, as IPA ignores tokens without "=".
	if cfg.IgnoreBootloaderFailure {
		t.Error("ipa-ignore-bootloader-failure without a value must not be set from the command line")
	}
	if err := cfg.ApplyKernelParams(map[string]string{"ipa-disk-wait-attempts": "many"}); err == nil {
		t.Error("a non-integer was accepted")
	}
}

func TestKernelCommandLineQuotes(t *testing.T) {
	params, err := kernelcmdline.Parse(strings.NewReader(`"ipa-global-request-id=req-a b" ipa-inspection-collectors="default, logs" " =0" x"y=1`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ipa-global-request-id": "req-a b", "ipa-inspection-collectors": "default, logs", "xy": "1"}
	if len(params) != len(want) {
		t.Fatalf("params %q, want %q", params, want)
	}
	for k, v := range want {
		if params[k] != v {
			t.Errorf("%s = %q, want %q", k, params[k], v)
		}
	}
}

// TestParamNamesUnique: every parameter is one flag of rivet-agent, and a
// flag defined twice panics at start-up.
func TestParamNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Params() {
		if seen[p.Name] {
			t.Errorf("parameter %s is listed twice", p.Name)
		}
		seen[p.Name] = true
	}
}
