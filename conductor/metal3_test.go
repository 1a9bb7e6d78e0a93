package conductor_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// recordingDriver is the fake-hardware driver that also records every
// power state asked for.
type recordingDriver struct {
	*fake.Driver
	mu   sync.Mutex
	asks []power.State
}

func (d *recordingDriver) SetPowerState(ctx context.Context, n power.Node, st power.State) error {
	d.mu.Lock()
	d.asks = append(d.asks, st)
	d.mu.Unlock()
	return d.Driver.SetPowerState(ctx, n, st)
}

func (d *recordingDriver) powerAsks() []power.State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.asks)
}

// TestDisablePowerOff takes a node with disable_power_off through
// automated cleaning, a deploy and an undeploy: the conductor never asks
// for a power off (it reboots instead), and refuses one asked through the
// API.
func TestDisablePowerOff(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	rec := &recordingDriver{Driver: h.Driver()}
	cfg := h.Config()
	cfg.Drivers = []power.Driver{rec}
	cfg.Provision.DisableAutomatedClean = false
	h.Start(cfg)

	var node map[string]any
	if st := h.CallVersion("1.94", "POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware", "disable_power_off": true}, &node); st != http.StatusNotAcceptable {
		t.Fatalf("disable_power_off at 1.94: %d %v", st, node)
	}
	if st := h.CallVersion("1.95", "POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware", "disable_power_off": true}, &node); st != http.StatusCreated || node["disable_power_off"] != true {
		t.Fatalf("create: %d %v", st, node)
	}
	if st := h.Call("POST", "/v1/ports", map[string]any{"address": conductortest.MAC, "node_uuid": node["uuid"]}, nil); st != http.StatusCreated {
		t.Fatalf("create port: %d", st)
	}
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "provide", nil)
	h.WaitState("n1", "available", 20*time.Second)
	if h.Agent() == nil {
		t.Fatal("automated cleaning did not boot the agent")
	}
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	n := h.WaitState("n1", "active", 20*time.Second)
	if n["power_state"] != string(power.On) {
		t.Errorf("deployed node power %v", n["power_state"])
	}
	var body map[string]any
	if st := h.Call("PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "power off"}, &body); st != http.StatusBadRequest {
		t.Errorf("power off asked for: %d %v", st, body)
	}
	if st := h.Call("PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "rebooting"}, nil); st != http.StatusAccepted {
		t.Errorf("reboot asked for: %d", st)
	}
	h.WaitFor("the reboot", 10*time.Second, func() bool { return h.Node("n1")["target_power_state"] == nil })
	h.Provision("n1", "deleted", nil)
	h.WaitState("n1", "available", 20*time.Second)
	asks := rec.powerAsks()
	for _, st := range asks {
		if st == power.Off || st == power.SoftOff {
			t.Fatalf("the conductor asked for %q of a node with disable_power_off: %v", st, asks)
		}
	}
	if !slices.Contains(asks, power.Reboot) {
		t.Errorf("no reboot asked for: %v", asks)
	}
}

// TestPerNodeAutomatedClean: a node's automated_clean overrides the
// conductor's setting, both ways.
func TestPerNodeAutomatedClean(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.Provision.DisableAutomatedClean = false
	h.Start(cfg)
	h.CreateNode()
	if st := h.CallVersion("1.46", "PATCH", "/v1/nodes/n1", []map[string]any{{"op": "add", "path": "/automated_clean", "value": false}}, nil); st != http.StatusNotAcceptable {
		t.Fatalf("automated_clean at 1.46: %d", st)
	}
	var n map[string]any
	if st := h.CallVersion("1.47", "PATCH", "/v1/nodes/n1", []map[string]any{{"op": "add", "path": "/automated_clean", "value": false}}, &n); st != http.StatusOK || n["automated_clean"] != false {
		t.Fatalf("automated_clean false: %d %v", st, n)
	}
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "provide", nil)
	h.WaitState("n1", "available", 10*time.Second)
	if h.Agent() != nil {
		t.Fatal("a node with automated_clean false was cleaned")
	}
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	if st := h.CallVersion("1.47", "PATCH", "/v1/nodes/n1", []map[string]any{{"op": "remove", "path": "/automated_clean"}}, &n); st != http.StatusOK || n["automated_clean"] != nil {
		t.Fatalf("automated_clean removed: %d %v", st, n)
	}
	h.Provision("n1", "provide", nil)
	h.WaitState("n1", "available", 20*time.Second)
	if h.Agent() == nil {
		t.Fatal("a node following the conductor's automated cleaning was not cleaned")
	}
}

// TestServiceFlowSteps services an active node with Ironic's flow steps
// (no ramdisk): it reboots and comes back to active; a step of the agent's
// that this agent lacks fails the servicing with a clear last_error, and
// abort brings the node back to active.
func TestServiceFlowSteps(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	before := h.Agent()

	service := func(ver string, steps []map[string]any, extra map[string]any) int {
		body := map[string]any{"target": "service", "service_steps": steps}
		for k, v := range extra {
			body[k] = v
		}
		var out map[string]any
		return h.CallVersion(ver, "PUT", "/v1/nodes/n1/states/provision", body, &out)
	}
	steps := []map[string]any{{"interface": "power", "step": "reboot"}, {"interface": "deploy", "step": "wait", "args": map[string]any{"seconds": 0}}}
	if st := service("1.86", steps, nil); st != http.StatusNotAcceptable {
		t.Fatalf("service at 1.86: %d", st)
	}
	if st := service("1.87", nil, nil); st != http.StatusBadRequest {
		t.Fatalf("service without steps: %d", st)
	}
	if st := service("1.107", steps, map[string]any{"disable_ramdisk": true}); st != http.StatusNotAcceptable {
		t.Fatalf("service disable_ramdisk at 1.107: %d", st)
	}
	if st := service("1.87", steps, nil); st != http.StatusAccepted {
		t.Fatalf("service: %d", st)
	}
	n := h.WaitState("n1", "active", 20*time.Second)
	if n["last_error"] != nil || n["power_state"] != string(power.On) {
		t.Fatalf("after servicing: last_error %v power %v", n["last_error"], n["power_state"])
	}
	if h.Agent() != before {
		t.Fatal("flow steps booted the ramdisk")
	}

	// The fake agent has no service steps: the servicing fails, naming the
	// step.
	if st := service("1.87", []map[string]any{{"interface": "deploy", "step": "burnin_cpu"}}, nil); st != http.StatusAccepted {
		t.Fatalf("service: %d", st)
	}
	n = h.WaitState("n1", "service failed", 30*time.Second)
	if le, _ := n["last_error"].(string); !strings.Contains(le, "service step") {
		t.Fatalf("last_error %q", le)
	}
	h.Provision("n1", "abort", nil)
	n = h.WaitState("n1", "active", 20*time.Second)
	h.WaitPower("n1", string(power.On), 10*time.Second)
	if n["last_error"] != nil {
		t.Fatalf("last_error after abort: %v", n["last_error"])
	}
}

// TestAdoptWithoutImage adopts a manageable node that has no image
// information, as Metal3 does for externally provisioned hosts.
func TestAdoptWithoutImage(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	h.CreateNode()
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "adopt", nil)
	n := h.WaitState("n1", "active", 10*time.Second)
	if n["last_error"] != nil {
		t.Fatalf("adopted with last_error %v", n["last_error"])
	}
	// Protected: an active node cannot be undeployed or deleted.
	var out map[string]any
	if st := h.CallVersion("1.48", "PATCH", "/v1/nodes/n1", []map[string]any{{"op": "add", "path": "/protected", "value": true},
		{"op": "add", "path": "/protected_reason", "value": "production"}}, &out); st != http.StatusOK || out["protected"] != true {
		t.Fatalf("protect: %d %v", st, out)
	}
	if st := h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "deleted"}, &out); st != http.StatusForbidden {
		t.Fatalf("undeploy a protected node: %d %v", st, out)
	}
	h.Call("PUT", "/v1/nodes/n1/maintenance", map[string]any{"reason": "x"}, nil)
	if st := h.Call("DELETE", "/v1/nodes/n1", nil, &out); st != http.StatusForbidden {
		t.Fatalf("delete a protected node: %d %v", st, out)
	}
	if st := h.CallVersion("1.48", "PATCH", "/v1/nodes/n1", []map[string]any{{"op": "add", "path": "/protected", "value": false}}, &out); st != http.StatusOK ||
		out["protected"] != false || out["protected_reason"] != nil {
		t.Fatalf("unprotect: %d %v", st, out)
	}
	if st := h.Call("DELETE", "/v1/nodes/n1", nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete an active node in maintenance: %d", st)
	}
}
