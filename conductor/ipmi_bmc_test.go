package conductor_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/ipmi"
	"github.com/rivetmetal/rivet/internal/conductortest"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

func TestMain(m *testing.M) {
	// ipmi_sim runs this test binary as its chassis-control helper.
	ipmisim.RunHelper()
	os.Exit(m.Run())
}

// TestIPMINodeWithDeadBMC enrolls an ipmi node whose BMC is OpenIPMI's
// ipmi_sim, then stops the BMC: validate and a deploy must fail naming the
// BMC's address.
func TestIPMINodeWithDeadBMC(t *testing.T) {
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	h := conductortest.New(t, fakeagent.Config{})
	bmc, err := ipmisim.Start(context.Background(), ipmisim.Config{
		Dir:         filepath.Join(h.Dir(), "bmc"),
		Command:     func(string) []string { return []string{"sleep", "600"} },
		StopTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bmc.Close()
	cfg := h.Config()
	cfg.Drivers = append(cfg.Drivers, ipmi.New(ipmi.Config{Timeout: 2 * time.Second, Retries: 1})) // generous: ipmi_sim answers slowly on a loaded machine
	h.Start(cfg)

	var node map[string]any
	if st := h.Call("POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "ipmi", "driver_info": bmc.DriverInfo()}, &node); st != http.StatusCreated {
		t.Fatalf("create node: %d %v", st, node)
	}
	if st := h.Call("POST", "/v1/ports", map[string]any{"address": conductortest.MAC, "node_uuid": node["uuid"]}, nil); st != http.StatusCreated {
		t.Fatalf("create port: %d", st)
	}
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 20*time.Second)
	h.Provision("n1", "provide", nil)
	h.WaitState("n1", "available", 20*time.Second)
	if n := h.Node("n1"); n["power_state"] != string(power.Off) {
		t.Fatalf("power state read through ipmi_sim = %v", n["power_state"])
	}
	validate := func() map[string]any {
		var v map[string]any
		if st := h.Call("GET", "/v1/nodes/n1/validate", nil, &v); st != http.StatusOK {
			t.Fatalf("validate: %d %v", st, v)
		}
		p, _ := v["power"].(map[string]any)
		return p
	}
	if p := validate(); p["result"] != true {
		t.Fatalf("validate with a live BMC: power %v", p)
	}

	if err := bmc.Close(); err != nil {
		t.Fatal(err)
	}
	p := validate()
	reason, _ := p["reason"].(string)
	if p["result"] != false || !strings.Contains(reason, bmc.Addr()) {
		t.Fatalf("validate with a dead BMC: power %v; want false naming %s", p, bmc.Addr())
	}
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	n := h.WaitState("n1", "deploy failed", 60*time.Second)
	if msg, _ := n["last_error"].(string); !strings.Contains(msg, bmc.Addr()) {
		t.Fatalf("last_error %q does not name the BMC %s", msg, bmc.Addr())
	}
	t.Logf("last_error: %s", n["last_error"])
}
