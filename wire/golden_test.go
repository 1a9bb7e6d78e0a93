package wire

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t *testing.T, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(golden(t, name), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// sameJSON fails unless got and want encode the same JSON value (key order
// aside).
func sameJSON(t *testing.T, what string, got any, want []byte) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var g, w any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s differs from Ironic's:\n got %s\nwant %s", what, b, compact(want))
	}
}

func compact(b []byte) string {
	var v any
	_ = json.Unmarshal(b, &v)
	c, _ := json.Marshal(v)
	return string(c)
}

// TestGoldenIronicRequests decodes what a real Ironic sent into our types.
func TestGoldenIronicRequests(t *testing.T) {
	var req CommandRequest
	load(t, "direct-deploy-deploy.execute_deploy_step.json", &req)
	if req.Name != DeployStepKind.ExecuteStepCommand() {
		t.Fatalf("name = %q", req.Name)
	}
	var p ExecuteStepParams
	if err := json.Unmarshal(req.Params, &p); err != nil {
		t.Fatal(err)
	}
	if p.Step.Step != WriteImageStep || p.Step.Interface != "deploy" || p.DeployVersion["generic_hardware_manager"] == "" {
		t.Fatalf("step = %+v version %v", p.Step, p.DeployVersion)
	}
	var args WriteImageArgs
	if err := json.Unmarshal(p.Step.Args, &args); err != nil {
		t.Fatal(err)
	}
	ii := args.ImageInfo
	if ii.ID != "disk.raw" || len(ii.URLs) != 1 || ii.DiskFormatString() != "raw" || ii.OSHashAlgo != "sha256" ||
		len(ii.OSHashVal) != 64 || ii.IsPartitionImage() || ii.ContainerFormat != nil {
		t.Fatalf("image_info = %+v", ii)
	}
	if err := ii.Validate(); err != nil {
		t.Errorf("Ironic's image_info does not validate: %v", err)
	}
	if p.Node["uuid"] == "" || p.Ports == nil {
		t.Fatalf("node/ports missing: %v", p.Node)
	}

	load(t, "partition-image-deploy.execute_deploy_step.json", &req)
	p = ExecuteStepParams{}
	if err := json.Unmarshal(req.Params, &p); err != nil {
		t.Fatal(err)
	}
	args = WriteImageArgs{}
	if err := json.Unmarshal(p.Step.Args, &args); err != nil {
		t.Fatal(err)
	}
	ii = args.ImageInfo
	if !ii.IsPartitionImage() || ii.RootMB != 1024 || ii.RootGB != 1 || ii.DeployBootMode != "uefi" || ii.DiskLabel != "gpt" || ii.Kernel != nil {
		t.Fatalf("partition image_info = %+v", ii)
	}
	if err := ii.Validate(); err != nil {
		t.Errorf("Ironic's partition image_info does not validate: %v", err)
	}

	var gs CommandRequest
	load(t, "direct-deploy-deploy.get_deploy_steps.json", &gs)
	var gp GetStepsParams
	if err := json.Unmarshal(gs.Params, &gp); err != nil || gp.Node["uuid"] == nil {
		t.Fatalf("get_deploy_steps params: %v %v", gp, err)
	}

	var ib CommandRequest
	load(t, "direct-deploy-image.install_bootloader.json", &ib)
	var ip InstallBootloaderParams
	if err := json.Unmarshal(ib.Params, &ip); err != nil || StringValue(ip.TargetBootMode) != "uefi" {
		t.Fatalf("install_bootloader params: %+v %v", ip, err)
	}

	var cs CommandRequest
	load(t, "cleaning-clean.execute_clean_step.json", &cs)
	var cp ExecuteStepParams
	if err := json.Unmarshal(cs.Params, &cp); err != nil || cp.Step.Step == "" || cp.CleanVersion == nil {
		t.Fatalf("execute_clean_step params: %+v %v", cp, err)
	}
	if !cp.Step.RequiresRamdisk || !cp.Step.IsAbortable() || cp.Step.PriorityValue() != 99 || cp.Step.Reboots() {
		t.Errorf("clean step = %+v", cp.Step)
	}
}

// TestGoldenConductorEncodesAsIronic encodes what the conductor sends the
// agent from our types and compares it with what Ironic sent: the
// write_image step (image_info with Ironic's nulls), a clean step, the
// params around them, install_bootloader.
func TestGoldenConductorEncodesAsIronic(t *testing.T) {
	for _, scenario := range []string{"direct-deploy", "partition-image"} {
		var req struct {
			Params struct {
				Step          json.RawMessage        `json:"step"`
				Node          map[string]any         `json:"node"`
				Ports         []map[string]any       `json:"ports"`
				DeployVersion HardwareManagerVersion `json:"deploy_version"`
			} `json:"params"`
		}
		file := scenario + "-deploy.execute_deploy_step.json"
		load(t, file, &req)
		var raw struct {
			Args WriteImageArgs `json:"args"`
		}
		if err := json.Unmarshal(req.Params.Step, &raw); err != nil {
			t.Fatal(err)
		}
		step, err := raw.Args.Step()
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, scenario+" write_image step", step, req.Params.Step)
		params := DeployStepKind.ExecuteStepParams(step, req.Params.Node, req.Params.Ports, req.Params.DeployVersion)
		var whole struct {
			Params json.RawMessage `json:"params"`
		}
		load(t, file, &whole)
		sameJSON(t, scenario+" execute_deploy_step params", params, whole.Params)

		// The plan Ironic keeps in driver_internal_info, with its own
		// steps ("argsinfo": null) and the agent's cached ones.
		dii, _ := req.Params.Node["driver_internal_info"].(map[string]any)
		for _, key := range []string{"deploy_steps", "agent_cached_deploy_steps"} {
			b, _ := json.Marshal(dii[key])
			var steps any
			if key == "deploy_steps" {
				steps = new([]PlannedStep)
			} else {
				steps = new(map[string][]PlannedStep)
			}
			if err := json.Unmarshal(b, steps); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			sameJSON(t, scenario+" "+key, steps, b)
		}

		var ib struct {
			Params json.RawMessage `json:"params"`
		}
		load(t, scenario+"-image.install_bootloader.json", &ib)
		var ip InstallBootloaderParams
		if err := json.Unmarshal(ib.Params, &ip); err != nil {
			t.Fatal(err)
		}
		sameJSON(t, scenario+" install_bootloader params", ip, ib.Params)
	}

	var cs struct {
		Params struct {
			Step         PlannedStep            `json:"step"`
			Node         map[string]any         `json:"node"`
			Ports        []map[string]any       `json:"ports"`
			CleanVersion HardwareManagerVersion `json:"clean_version"`
		} `json:"params"`
	}
	load(t, "cleaning-clean.execute_clean_step.json", &cs)
	params := CleanStepKind.ExecuteStepParams(cs.Params.Step, cs.Params.Node, cs.Params.Ports, cs.Params.CleanVersion)
	var whole struct {
		Params json.RawMessage `json:"params"`
	}
	load(t, "cleaning-clean.execute_clean_step.json", &whole)
	sameJSON(t, "execute_clean_step params", params, whole.Params)
}

// TestGoldenAgentAnswers decodes what the agent answered Ironic and
// encodes it back: command lists with step results, get_*_steps,
// get_partition_uuids, and the heartbeat body.
func TestGoldenAgentAnswers(t *testing.T) {
	for _, name := range []string{"direct-deploy-commands-get_deploy_steps-SUCCEEDED.json",
		"direct-deploy-commands-execute_deploy_step-SUCCEEDED.json",
		"cleaning-commands-execute_clean_step-SUCCEEDED.json",
		"partition-image-commands-install_bootloader-SUCCEEDED.json"} {
		var list CommandList
		load(t, name, &list)
		sameJSON(t, name, list, golden(t, name))
	}

	var list CommandList
	load(t, "direct-deploy-commands-get_deploy_steps-SUCCEEDED.json", &list)
	steps, err := DeployStepKind.DecodeAgentSteps(list.Last())
	if err != nil {
		t.Fatal(err)
	}
	gm := steps.Steps["GenericHardwareManager"]
	if len(gm) != 4 || gm[2].Step != WriteImageStep || steps.HardwareManagerVersion["generic_hardware_manager"] != "1.1" || gm[1].ArgsInfo == nil {
		t.Errorf("deploy steps = %+v", steps)
	}
	planned, err := gm[1].Planned()
	if err != nil || !planned.RequiresRamdisk || planned.PriorityValue() != 0 || len(planned.ArgsInfo) == 0 {
		t.Errorf("planned = %+v, %v", planned, err)
	}

	load(t, "direct-deploy-commands-execute_deploy_step-SUCCEEDED.json", &list)
	res, err := DeployStepKind.DecodeStepResult(list.Last())
	if err != nil || res.Step.Step != WriteImageStep || res.Step.Interface != "deploy" || len(res.Result) == 0 {
		t.Errorf("deploy step result = %+v, %v", res, err)
	}
	load(t, "cleaning-commands-execute_clean_step-SUCCEEDED.json", &list)
	res, err = CleanStepKind.DecodeStepResult(list.Last())
	if err != nil || res.Step.Step != "erase_devices_metadata" || string(res.Result) != "null" {
		t.Errorf("clean step result = %+v, %v", res, err)
	}
	cleanSteps, err := CleanStepKind.DecodeAgentSteps(&list.Commands[0])
	if err != nil || len(cleanSteps.Steps["GenericHardwareManager"]) == 0 {
		t.Errorf("clean steps = %+v, %v", cleanSteps, err)
	}

	for _, name := range []string{"direct-deploy-standby.get_partition_uuids.response.json", "partition-image-standby.get_partition_uuids.response.json"} {
		var r CommandResult
		load(t, name, &r)
		var pu PartitionUUIDs
		if err := r.DecodeResult(&pu); err != nil || pu.RootUUID == "" {
			t.Fatalf("%s: %+v %v", name, pu, err)
		}
		sameJSON(t, name+" result", pu, r.CommandResult)
	}

	for _, name := range []string{"direct-deploy-heartbeat.json", "cleaning-heartbeat.json"} {
		var hb HeartbeatRequest
		load(t, name, &hb)
		if hb.CallbackURL == "" || len(hb.AgentToken) != 43 || hb.AgentVersion == "" {
			t.Errorf("%s: %+v", name, hb)
		}
		sameJSON(t, name, hb, golden(t, name))
	}
}

func TestGoldenLookupAnswer(t *testing.T) {
	var lr LookupResponse
	load(t, "direct-deploy-lookup.json", &lr)
	if lr.Node.UUID == "" || lr.Config.AgentToken == nil || len(*lr.Config.AgentToken) != 43 ||
		lr.Config.HeartbeatTimeout != 10 || !lr.Config.AgentTokenRequired || len(lr.Config.PermittedImageFormats) != 3 {
		t.Fatalf("lookup = %+v", lr)
	}
	if lr.Node.InstanceInfo["image_url"] != Masked {
		t.Fatal("image_url not masked in the golden lookup")
	}
	sameJSON(t, "lookup answer", lr, golden(t, "direct-deploy-lookup.json"))
}

func TestImageInfoNulls(t *testing.T) {
	whole := ImageInfo{ID: "disk.raw", URLs: []string{"http://h/disk.raw"}, OSHashAlgo: "sha256", OSHashVal: "ab"}
	b, _ := json.Marshal(whole)
	if string(b) != `{"id":"disk.raw","urls":["http://h/disk.raw"],"disk_format":null,"container_format":null,"os_hash_algo":"sha256","os_hash_value":"ab"}` {
		t.Errorf("whole-disk image_info = %s", b)
	}
	part := whole
	part.ImageType, part.RootGB, part.RootMB = ImageTypePartition, 1, 1024
	b, _ = json.Marshal(part)
	for _, k := range []string{`"kernel":null`, `"ramdisk":null`, `"swap_mb":0`, `"ephemeral_mb":0`, `"ephemeral_format":null`,
		`"configdrive":null`, `"preserve_ephemeral":false`, `"root_mb":1024`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("partition image_info lacks %s: %s", k, b)
		}
	}
	var back ImageInfo
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, part) {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestImageInfoValidate(t *testing.T) {
	base := func() ImageInfo {
		return ImageInfo{ID: "img", URLs: []string{"http://127.0.0.1/img"}, OSHashAlgo: "sha256", OSHashVal: strings.Repeat("a", 64)}
	}
	tests := []struct {
		name string
		edit func(*ImageInfo)
		want string
	}{
		{"whole disk", func(*ImageInfo) {}, ""},
		{"checksum file", func(i *ImageInfo) { i.OSHashAlgo, i.OSHashVal, i.Checksum = "", "", "https://h/SHA256SUMS" }, ""},
		{"file URL", func(i *ImageInfo) { i.URLs = []string{"file:///srv/img"} }, ""},
		{"partition", func(i *ImageInfo) { i.ImageType, i.RootMB = ImageTypePartition, 1024 }, ""},
		{"no id", func(i *ImageInfo) { i.ID = "" }, "missing id"},
		{"no id or urls", func(i *ImageInfo) { i.ID, i.URLs = "", nil }, "missing id, urls"},
		{"ftp", func(i *ImageInfo) { i.URLs = []string{"ftp://h/img"} }, "not an http(s) or file URL"},
		{"no checksum", func(i *ImageInfo) { i.OSHashAlgo, i.OSHashVal = "", "" }, "no checksum"},
		{"half hash", func(i *ImageInfo) { i.OSHashVal = "" }, "set together"},
		{"image_type", func(i *ImageInfo) { i.ImageType = "lvm" }, "image_type"},
		{"target disks", func(i *ImageInfo) { i.TargetDisks = "some" }, "rivet_target_disks"},
		{"target disks, partition", func(i *ImageInfo) { i.TargetDisks, i.ImageType = TargetAllMatching, ImageTypePartition }, "only whole-disk"},
		{"negative swap", func(i *ImageInfo) { i.ImageType, i.SwapMB = ImageTypePartition, -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := base()
			tc.edit(&i)
			err := i.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidImageInfo) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestIronicErrorShape(t *testing.T) {
	e := NewIronicError(FaultClient, "Resource could not be found.")
	b, _ := json.Marshal(e)
	if !strings.HasPrefix(string(b), `{"error_message":"{\"faultcode\":\"Client\",\"faultstring\":\"Resource could not be found.\",\"debuginfo\":null}"}`) {
		t.Fatalf("error body = %s", b)
	}
	if FaultText(b) != "Resource could not be found." {
		t.Fatalf("FaultText = %q", FaultText(b))
	}
	if FaultText([]byte("plain")) != "plain" {
		t.Fatal("FaultText on a non-Ironic body")
	}
}

func TestFlexInt(t *testing.T) {
	var v struct{ A, B, C, D FlexInt }
	if err := json.Unmarshal([]byte(`{"A": 5, "B": "7", "C": null, "D": 3.0}`), &v); err != nil || v.A != 5 || v.B != 7 || v.C != 0 || v.D != 3 {
		t.Fatalf("%+v %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"A": "x"}`), &v); err == nil {
		t.Fatal("FlexInt accepted a word")
	}
	if err := json.Unmarshal([]byte(`{"A": 2.5}`), &v); err == nil {
		t.Fatal("FlexInt accepted a fraction")
	}
}

func TestNegotiateVersion(t *testing.T) {
	for _, c := range [][3]string{{"1.82", "1.62", "1.62"}, {"1.46", "1.62", "1.46"}, {"1.62", "1.68", "1.62"}, {"bad", "1.68", "1.68"}, {"2.1", "1.68", "1.68"}} {
		if got := NegotiateVersion(c[0], c[1]); got != c[2] {
			t.Errorf("NegotiateVersion(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}
