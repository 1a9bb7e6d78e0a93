package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestGoldenIronicRequests decodes what a real Ironic sent into our types.
func TestGoldenIronicRequests(t *testing.T) {
	var req CommandRequest
	load(t, "direct-deploy-deploy.execute_deploy_step.json", &req)
	if req.Name != "deploy.execute_deploy_step" {
		t.Fatalf("name = %q", req.Name)
	}
	var p ExecuteStepParams
	if err := json.Unmarshal(req.Params, &p); err != nil {
		t.Fatal(err)
	}
	if p.Step.Step != "write_image" || p.Step.Interface != "deploy" || p.DeployVersion["generic_hardware_manager"] == "" {
		t.Fatalf("step = %+v version %v", p.Step, p.DeployVersion)
	}
	raw, _ := json.Marshal(p.Step.Args)
	var args WriteImageArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		t.Fatal(err)
	}
	ii := args.ImageInfo
	if ii.ID != "disk.raw" || len(ii.URLs) != 1 || ii.DiskFormatString() != "raw" || ii.OSHashAlgo != "sha256" ||
		len(ii.OSHashVal) != 64 || ii.IsPartitionImage() || ii.ContainerFormat != nil {
		t.Fatalf("image_info = %+v", ii)
	}
	if p.Node["uuid"] == "" || p.Ports == nil {
		t.Fatalf("node/ports missing: %v", p.Node)
	}

	load(t, "partition-image-deploy.execute_deploy_step.json", &req)
	json.Unmarshal(req.Params, &p)
	raw, _ = json.Marshal(p.Step.Args)
	args = WriteImageArgs{}
	if err := json.Unmarshal(raw, &args); err != nil {
		t.Fatal(err)
	}
	ii = args.ImageInfo
	if !ii.IsPartitionImage() || ii.RootMB != 1024 || ii.RootGB != 1 || ii.DeployBootMode != "uefi" || ii.DiskLabel != "gpt" || ii.Kernel != nil {
		t.Fatalf("partition image_info = %+v", ii)
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
