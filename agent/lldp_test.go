package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/hardware/lldp"
	"github.com/rivetmetal/rivet/internal/kernelcmdline"
)

// TestLLDPParameters reads IPA's two LLDP parameters from a kernel command
// line as Metal3's ironic-image writes it, and gives the inventory a
// listener only when collection is on.
func TestLLDPParameters(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.CollectLLDP || cfg.LLDPTimeout != 30*time.Second {
		t.Fatalf("defaults: collect %v, timeout %v", cfg.CollectLLDP, cfg.LLDPTimeout)
	}
	if l := (&Agent{cfg: cfg}).lldpListener(); l != nil {
		t.Fatalf("a listener with ipa-collect-lldp off: %#v", l)
	}
	params, err := kernelcmdline.Parse(strings.NewReader("ipa-inspection-collectors=default,logs ipa-inspection-dhcp-all-interfaces=1 ipa-collect-lldp=1 ipa-lldp-timeout=2.5 BOOTIF=${mac}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ApplyKernelParams(params); err != nil {
		t.Fatal(err)
	}
	if !cfg.CollectLLDP || cfg.LLDPTimeout != 2500*time.Millisecond {
		t.Fatalf("collect %v, timeout %v", cfg.CollectLLDP, cfg.LLDPTimeout)
	}
	l, ok := (&Agent{cfg: cfg}).lldpListener().(lldp.Listener)
	if !ok || l.Timeout != 2500*time.Millisecond {
		t.Fatalf("listener %#v", l)
	}
	if err := cfg.ApplyKernelParams(map[string]string{"ipa-lldp-timeout": "soon"}); err == nil {
		t.Error("a timeout that is not a number was accepted")
	}
}
