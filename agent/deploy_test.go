package agent

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
)

const nodeUUID = "1215c45f-5c01-4883-84e1-a2a82a7c8a52"

// diskImage is a fake whole-disk image: random bytes with an MBR disk
// signature, and an unaligned length.
func diskImage(t *testing.T, size int, sig uint32) ([]byte, string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	binary.LittleEndian.PutUint32(b[440:], sig)
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

func imageServer(t *testing.T, img []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/disk.raw" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "disk.raw", time.Time{}, bytes.NewReader(img))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeImageStep(url, sum string) map[string]any {
	return map[string]any{
		"interface": "deploy", "step": "write_image", "priority": 80,
		"args": map[string]any{"image_info": map[string]any{
			"id": "disk.raw", "urls": []string{url}, "disk_format": "raw", "container_format": nil,
			"stream_raw_images": true, "os_hash_algo": "sha256", "os_hash_value": sum, "node_uuid": nodeUUID,
		}, "configdrive": nil},
	}
}

func nodeWithHints(hints map[string]any) map[string]any {
	props := map[string]any{"cpu_arch": "x86_64"}
	if hints != nil {
		props["root_device"] = hints
	}
	return map[string]any{"uuid": nodeUUID, "properties": props, "instance_info": map[string]any{}, "driver_internal_info": map[string]any{}}
}

func executeStep(c client, step map[string]any, node map[string]any) wire.CommandResult {
	c.t.Helper()
	r := c.run("deploy.execute_deploy_step", map[string]any{
		"step": step, "node": node, "ports": []any{},
		"deploy_version": map[string]string{"generic_hardware_manager": "1.2"},
	}, false)
	// An async command answers RUNNING, unless it already ended (a fast
	// failure can beat the answer).
	if r.CommandName != "execute_deploy_step" || r.CommandStatus == "" {
		c.t.Fatalf("execute_deploy_step answered %+v", r)
	}
	return c.waitDone()
}

// fakeIronic is the Ironic API side of lookup and heartbeat.
type fakeIronic struct {
	mu       sync.Mutex
	lookups  int
	lookupQ  []string
	beats    []wire.HeartbeatRequest
	beatSeen chan struct{}
	node     map[string]any
}

func (f *fakeIronic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/":
		json.NewEncoder(w).Encode(wire.RootDocument{DefaultVersion: wire.APIVersion{ID: "v1", Version: "1.82", MinVersion: "1.1"}})
	case r.URL.Path == "/v1/lookup":
		f.lookups++
		f.lookupQ = append(f.lookupQ, r.URL.Query().Get("addresses"))
		if f.lookups == 1 { // the node is not in a lookup state yet
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(wire.NewIronicError("Client", "Resource could not be found."))
			return
		}
		tok := testToken
		props, _ := f.node["properties"].(map[string]any)
		json.NewEncoder(w).Encode(wire.LookupResponse{
			Node:   wire.LookupNode{UUID: nodeUUID, Properties: props, InstanceInfo: map[string]any{}, DriverInternalInfo: map[string]any{}},
			Config: wire.LookupConfig{HeartbeatTimeout: 300, AgentToken: &tok, AgentTokenRequired: true},
		})
	case r.URL.Path == "/v1/heartbeat/"+nodeUUID && r.Method == "POST":
		var hb wire.HeartbeatRequest
		json.NewDecoder(r.Body).Decode(&hb)
		f.beats = append(f.beats, hb)
		w.WriteHeader(202)
		select {
		case f.beatSeen <- struct{}{}:
		default:
		}
	default:
		w.WriteHeader(404)
	}
}

func waitBeat(t *testing.T, f *fakeIronic) {
	t.Helper()
	select {
	case <-f.beatSeen:
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat within 30 s")
	}
}

// TestDirectDeployLikeIronic replays the agent side of a real Ironic direct
// deploy (shared/ironic-traffic/direct-deploy.md) against a loop device.
func TestDirectDeployLikeIronic(t *testing.T) {
	disk := loopdev.New(t, 5<<30)
	other := loopdev.New(t, 6<<30)
	img, sum := diskImage(t, 9<<20+333, 0x1a2b3c4d)
	images := imageServer(t, img)
	fi := &fakeIronic{beatSeen: make(chan struct{}, 10), node: nodeWithHints(map[string]any{"size": 5})}
	ironic := httptest.NewServer(fi)
	defer ironic.Close()

	cfg := DefaultConfig()
	cfg.APIURLs = []string{ironic.URL}
	cfg.LookupMACs = []string{"52-54-00-12-34-56"}
	cfg.LookupInterval = 10 * time.Millisecond
	cfg.BlockDevices = []string{other.Path, disk.Path}
	power := &fakePower{}
	a, base := startAgent(t, cfg, power)
	waitBeat(t, fi)
	fi.mu.Lock()
	hb := fi.beats[0]
	lookups, addrs := fi.lookups, fi.lookupQ[0]
	fi.mu.Unlock()
	if lookups != 2 || addrs != "52:54:00:12:34:56" {
		t.Fatalf("lookups = %d with addresses %q; want a retry after 404 and the normalized MAC", lookups, addrs)
	}
	// Ironic 21.4 speaks API 1.82, so the agent serves auto-TLS and sends
	// its certificate with every beat.
	if hb.AgentToken != testToken || hb.CallbackURL != "https://"+a.Addr().String() || hb.AgentVersion != Version || hb.AgentVerifyCA == "" {
		t.Fatalf("heartbeat = %+v", hb)
	}
	c := client{t: t, base: hb.CallbackURL, token: testToken, hc: tlsClient(t, hb.AgentVerifyCA)}
	_ = base

	// Heartbeat 1: get steps, check freshly booted, start write_image.
	steps := c.run("deploy.get_deploy_steps", map[string]any{"node": fi.node, "ports": []any{}}, true)
	var ds wire.DeploySteps
	if err := steps.DecodeResult(&ds); err != nil || steps.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("get_deploy_steps: %+v %v", steps, err)
	}
	names := map[string]int{}
	for _, st := range ds.DeploySteps["GenericHardwareManager"] {
		names[st.Interface+"."+st.Step] = st.Priority
	}
	if p, ok := names["deploy.write_image"]; !ok || p != 0 || ds.HardwareManagerVersion["generic_hardware_manager"] != "1.2" {
		t.Fatalf("deploy steps = %+v", ds)
	}
	if l := c.list(); len(l) != 1 || l[0].CommandName != "get_deploy_steps" {
		t.Fatalf("not freshly booted: %+v", l)
	}
	step := writeImageStep(images.URL+"/disk.raw", sum)
	res := executeStep(c, step, fi.node)
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("write_image: %+v", res.CommandError)
	}
	var dr wire.DeployStepResult
	res.DecodeResult(&dr)
	var ir wire.ImageResult
	json.Unmarshal(dr.DeployResult, &ir)
	if dr.DeployStep.Step != "write_image" || dr.DeployStep.Interface != "deploy" ||
		ir.Result != "prepare_image: image (disk.raw) written to device "+disk.Path+" root_uuid=0x1a2b3c4d" {
		t.Fatalf("deploy result = %s / %+v", dr.DeployResult, dr.DeployStep)
	}
	if p := ir.Progress; p == nil || p.BytesWritten != int64(len(img)) || p.Timings["download"] <= 0 || p.Timings["flush"] <= 0 {
		t.Fatalf("final progress = %+v", ir.Progress)
	}
	if _, ok := ir.Progress.Timings[wire.TimingDecodeInputWait]; ok {
		t.Fatalf("a raw image has no decode stage, but its timings are %v", ir.Progress.Timings)
	}
	waitBeat(t, fi) // the forced heartbeat after the async command

	// Heartbeat 2: partition UUIDs, then power off.
	pu := c.run("standby.get_partition_uuids", map[string]any{}, true)
	var uuids wire.PartitionUUIDs
	pu.DecodeResult(&uuids)
	if uuids.RootUUID != "0x1a2b3c4d" {
		t.Fatalf("partition uuids = %s", pu.CommandResult)
	}
	if r := c.run("standby.power_off", map[string]any{}, false); r.CommandName != "power_off" {
		t.Fatalf("power_off: %+v", r)
	}
	c.waitDone()
	if got := power.list(); len(got) != 1 || got[0] != "power off" {
		t.Fatalf("power actions = %v", got)
	}
	if !bytes.Equal(readDisk(t, disk.Path, len(img)), img) {
		t.Fatal("disk content differs from the image")
	}
	if !bytes.Equal(readDisk(t, other.Path, 1<<20), make([]byte, 1<<20)) {
		t.Fatal("the disk the hints did not choose was written")
	}
}

func readDisk(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteImageFailures(t *testing.T) {
	small := loopdev.New(t, 5<<30)
	img, sum := diskImage(t, 4<<20, 1)
	images := imageServer(t, img)
	_, base := startAgent(t, standaloneConfig(small.Path), &fakePower{})
	c := client{t: t, base: base}

	cases := []struct {
		name  string
		step  map[string]any
		node  map[string]any
		typ   string
		inMsg string
	}{
		{"image URL 404", writeImageStep(images.URL+"/missing.raw", sum), nodeWithHints(nil),
			"ImageDownloadError", images.URL + "/missing.raw: HTTP 404"},
		{"wrong checksum", writeImageStep(images.URL+"/disk.raw", strings.Repeat("ab", 32)), nodeWithHints(nil),
			"ImageChecksumError", "expected abab"},
		{"no disk matches", writeImageStep(images.URL+"/disk.raw", sum), nodeWithHints(map[string]any{"serial": "NOPE"}),
			"DeviceNotFound", "no disk matches the root device hints {serial=NOPE}; disks seen: " + small.Path},
		{"bad hint type", writeImageStep(images.URL+"/disk.raw", sum), nodeWithHints(map[string]any{"size": "huge"}),
			"DeviceNotFound", `root device hint "size" is not an integer`},
		{"unknown step", map[string]any{"interface": "deploy", "step": "fly"}, nodeWithHints(nil),
			"HardwareManagerMethodNotFound", "deploy.fly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := executeStep(client{t: t, base: base}, tc.step, tc.node)
			if res.CommandStatus != wire.StatusFailed || res.CommandError == nil || res.CommandError.Type != tc.typ {
				t.Fatalf("result = %+v %+v", res, res.CommandError)
			}
			mustContain(t, "command_error.details", res.CommandError.Details, tc.inMsg)
		})
	}
	_ = c
}

func TestWriteImageLargerThanDiskFailsBeforeWriting(t *testing.T) {
	disk := loopdev.New(t, 8<<20)
	img, sum := diskImage(t, 9<<20, 7)
	images := imageServer(t, img)
	_, base := startAgent(t, standaloneConfig(disk.Path), &fakePower{})
	res := executeStep(client{t: t, base: base}, writeImageStep(images.URL+"/disk.raw", sum), nodeWithHints(map[string]any{"name": disk.Path}))
	if res.CommandStatus != wire.StatusFailed || res.CommandError.Type != "ImageWriteError" {
		t.Fatalf("result = %+v", res.CommandError)
	}
	mustContain(t, "details", res.CommandError.Details, "nothing was written")
	if !bytes.Equal(readDisk(t, disk.Path, 1<<20), make([]byte, 1<<20)) {
		t.Fatal("disk written although the image cannot fit")
	}
}

func TestRootDeviceChoice(t *testing.T) {
	five := loopdev.New(t, 5<<30)
	six := loopdev.New(t, 6<<30)
	img, sum := diskImage(t, 1<<20, 9)
	images := imageServer(t, img)
	_, base := startAgent(t, standaloneConfig(six.Path, five.Path), &fakePower{})
	c := client{t: t, base: base}
	for _, tc := range []struct {
		hints map[string]any
		want  string
	}{
		{nil, five.Path}, // smallest disk of at least 4 GiB
		{map[string]any{"size": 6}, six.Path},
		{map[string]any{"name": six.Path}, six.Path},
		{map[string]any{"size": ">= 5", "name": "<in> " + strings.TrimPrefix(five.Path, "/dev/")}, five.Path},
	} {
		res := executeStep(c, writeImageStep(images.URL+"/disk.raw", sum), nodeWithHints(tc.hints))
		if res.CommandStatus != wire.StatusSucceeded {
			t.Fatalf("hints %v: %+v", tc.hints, res.CommandError)
		}
		var dr wire.DeployStepResult
		res.DecodeResult(&dr)
		mustContain(t, "deploy_result", string(dr.DeployResult), "written to device "+tc.want+" ")
	}
}

func TestDeployVersionMismatch(t *testing.T) {
	_, base := startAgent(t, standaloneConfig(), &fakePower{})
	c := client{t: t, base: base}
	r := c.run("deploy.execute_deploy_step", map[string]any{
		"step": map[string]any{"interface": "deploy", "step": "write_image"}, "node": nodeWithHints(nil), "ports": []any{},
		"deploy_version": map[string]string{"generic_hardware_manager": "0.9"},
	}, true)
	if r.CommandStatus != wire.StatusVersionMismatch || r.CommandError.Type != "VersionMismatch" {
		t.Fatalf("version mismatch: %+v %+v", r, r.CommandError)
	}
}

// rivet_target_disks=all_matching writes one image to every disk the hints
// match, at once, and to no other; without hints, or for a partition
// image, it is refused before anything is written.
func TestWriteImageToAllMatchingDisks(t *testing.T) {
	a := loopdev.New(t, 32<<20)
	b := loopdev.New(t, 32<<20)
	other := loopdev.New(t, 32<<20)
	img, sum := diskImage(t, 3<<20+512, 11)
	images := imageServer(t, img)
	_, base := startAgent(t, standaloneConfig(a.Path, b.Path, other.Path), &fakePower{})
	c := client{t: t, base: base}
	fanOut := func(imageType string) map[string]any {
		step := writeImageStep(images.URL+"/disk.raw", sum)
		info := step["args"].(map[string]any)["image_info"].(map[string]any)
		info["rivet_target_disks"] = "all_matching"
		if imageType != "" {
			info["image_type"] = imageType
		}
		return step
	}
	both := nodeWithHints(map[string]any{"name": "<or> " + a.Path + " <or> " + b.Path})

	// Without hints the choice fails when the step runs.
	res := executeStep(c, fanOut(""), nodeWithHints(nil))
	if res.CommandStatus != wire.StatusFailed || res.CommandError == nil || res.CommandError.Type != "DeviceNotFound" {
		t.Fatalf("no hints: result = %+v %+v", res, res.CommandError)
	}
	mustContain(t, "no hints", res.CommandError.Details, "writing every matching disk needs root device hints")
	// A partition image is refused with the request, as invalid parameters.
	code, body := c.post("deploy.execute_deploy_step", map[string]any{
		"step": fanOut("partition"), "node": both, "ports": []any{},
		"deploy_version": map[string]string{"generic_hardware_manager": "1.2"}}, true)
	if code != http.StatusBadRequest {
		t.Fatalf("partition image to several disks: HTTP %d %s", code, body)
	}
	mustContain(t, "partition image", string(body), "only whole-disk images go to several disks")
	zero := make([]byte, 1<<20)
	for _, d := range []string{a.Path, b.Path, other.Path} {
		if !bytes.Equal(readDisk(t, d, 1<<20), zero) {
			t.Fatalf("%s written by a refused request", d)
		}
	}

	res = executeStep(c, fanOut(""), both)
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("write to two disks: %+v", res.CommandError)
	}
	var dr wire.DeployStepResult
	res.DecodeResult(&dr)
	var ir wire.ImageResult
	if err := json.Unmarshal(dr.DeployResult, &ir); err != nil {
		t.Fatal(err)
	}
	if len(ir.Devices) != 2 || ir.Devices[0] != a.Path || ir.Devices[1] != b.Path {
		t.Fatalf("devices = %v, want [%s %s]", ir.Devices, a.Path, b.Path)
	}
	mustContain(t, "result", ir.Result, "written to device "+a.Path+" ")
	for _, d := range []string{a.Path, b.Path} {
		if !bytes.Equal(readDisk(t, d, len(img)), img) {
			t.Fatalf("%s does not hold the image", d)
		}
	}
	if !bytes.Equal(readDisk(t, other.Path, 1<<20), zero) {
		t.Fatal("the disk the hints did not match was written")
	}
}
