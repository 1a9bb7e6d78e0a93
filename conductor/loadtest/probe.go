package loadtest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// probeRounds is how many times probeCore repeats its work; probeTries
// how many times it times that, keeping the fastest.
const (
	probeRounds = 2000
	probeTries  = 3
)

// probeCore times a fixed piece of work of the kind the conductor does
// (a node-like JSON document decoded into maps, changed and encoded
// again, on one goroutine), the fastest of a few tries. Run before a
// storm, the conductor waiting for its agents and nothing else of the
// run's started, it says how fast a core of this machine was at the
// time: a shared host can run the same work more slowly in one hour than
// in another without counting any time as stolen.
func probeCore() (time.Duration, error) {
	doc, err := probeDocument()
	if err != nil {
		return 0, err
	}
	var best time.Duration
	for range probeTries {
		start := time.Now()
		for i := range probeRounds {
			var m map[string]any
			if err := json.Unmarshal(doc, &m); err != nil {
				return 0, fmt.Errorf("loadtest: core probe: %w", err)
			}
			info := m["driver_internal_info"].(map[string]any)
			info["agent_last_heartbeat"] = strconv.Itoa(i)
			if _, err := json.Marshal(m); err != nil {
				return 0, fmt.Errorf("loadtest: core probe: %w", err)
			}
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

// probeDocument is the probe's node-like document: a few KiB of nested
// objects, lists and scalars.
func probeDocument() ([]byte, error) {
	steps := make([]any, 0, 8)
	for i := range 8 {
		steps = append(steps, map[string]any{"step": "step_" + strconv.Itoa(i), "interface": "deploy",
			"priority": 100 - i, "argsinfo": map[string]any{"force": map[string]any{"required": false}}})
	}
	props := map[string]any{"cpu_arch": "x86_64", "cpus": 64, "memory_mb": 262144, "local_gb": 1800,
		"capabilities": "boot_mode:uefi,secure_boot:true"}
	return json.Marshal(map[string]any{
		"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "name": "probe-node", "driver": "ipmi",
		"provision_state": "wait call-back", "power_state": "power on", "properties": props,
		"driver_info":   map[string]any{"ipmi_address": "192.0.2.10", "ipmi_username": "admin", "deploy_kernel": "http://192.0.2.1/k", "deploy_ramdisk": "http://192.0.2.1/r"},
		"instance_info": map[string]any{"image_source": "http://192.0.2.1/image.qcow2", "image_checksum": "sha256:0123456789abcdef", "root_gb": 100},
		"driver_internal_info": map[string]any{"agent_url": "http://192.0.2.20:9999", "agent_version": "10.0.0",
			"deploy_steps": steps, "agent_cached_deploy_steps": map[string]any{"deploy": steps}, "clean_steps": nil},
	})
}
