package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
)

// golden loads a request a real Ironic 21.4 sent (wire/testdata).
func golden(t *testing.T, name string) wire.CommandRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "wire", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var req wire.CommandRequest
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

// TestIronicCleaningRequestsReplayed posts the requests Ironic sent in a
// cleaning run to an agent with one loop device. The captured
// execute_clean_step carries the stand-in agent's clean_version (1.1), so
// it first gets CLEAN_VERSION_MISMATCH, as from IPA; with this agent's
// version it runs.
func TestIronicCleaningRequestsReplayed(t *testing.T) {
	loop := loopdev.New(t, 16<<20)
	_, base := startAgent(t, standaloneConfig(loop.Path), &fakePower{})
	c := client{t: t, base: base}
	for _, f := range []string{"cleaning-clean.get_clean_steps.json", "cleaning-clean.execute_clean_step.json", "cleaning-log.collect_system_logs.json"} {
		req := golden(t, f)
		wait := req.Name != "clean.execute_clean_step"
		var params map[string]any
		json.Unmarshal(req.Params, &params)
		r := c.run(req.Name, params, wait)
		if !wait {
			r = c.waitDone()
		}
		if req.Name == "clean.execute_clean_step" {
			if r.CommandStatus != wire.StatusVersionMismatch {
				t.Fatalf("%s with clean_version %v: %+v", f, params["clean_version"], r)
			}
			params["clean_version"] = ourVersion
			c.run(req.Name, params, false)
			r = c.waitDone()
		}
		if r.CommandStatus != wire.StatusSucceeded {
			t.Fatalf("%s: %+v %+v", f, r, r.CommandError)
		}
		if req.Name == "clean.execute_clean_step" {
			var res wire.CleanStepResult
			if err := r.DecodeResult(&res); err != nil || res.CleanStep.Step != "erase_devices_metadata" {
				t.Fatalf("clean result %s %v", r.CommandResult, err)
			}
		}
	}
}
