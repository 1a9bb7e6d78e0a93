package internalinfo

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// deploying is a node's driver_internal_info in the middle of a
// whole-disk deploy as Rivet keeps it: the plan with write_image's
// arguments, the agent's cached deploy steps, progress, timings and the
// erase settings.
const deploying = `{
	"is_whole_disk_image": true,
	"deploy_steps": [
		{"step": "deploy", "priority": 100, "argsinfo": null, "interface": "deploy"},
		{"step": "write_image", "priority": 80, "argsinfo": null, "interface": "deploy", "requires_ramdisk": true,
		 "args": {"image_info": {"id": "disk.raw", "urls": ["http://127.0.0.1:18089/disk.raw"], "disk_format": "raw",
			"container_format": null, "stream_raw_images": true, "os_hash_algo": "sha256",
			"os_hash_value": "7d09c666a563e083570792f9737770144f42ed9f2fdf69fb55f711f6c4f86ef8",
			"node_uuid": "1215c45f-5c01-4883-84e1-a2a82a7c8a52"}, "configdrive": null}},
		{"step": "prepare_instance_boot", "priority": 60, "argsinfo": null, "interface": "deploy"},
		{"step": "tear_down_agent", "priority": 40, "argsinfo": null, "interface": "deploy"},
		{"step": "switch_to_tenant_network", "priority": 30, "argsinfo": null, "interface": "deploy"},
		{"step": "boot_instance", "priority": 20, "argsinfo": null, "interface": "deploy"}
	],
	"last_power_state_change": "2026-11-21T10:00:06.448633",
	"deploy_boot_mode": "uefi",
	"deploy_step_index": 1,
	"deploy_step_started": true,
	"agent_secret_token": "KrTS84g08AHWKoyDoQDo6D7D8q869z_W4GfK3A3ksyc",
	"agent_secret_token_handed_out": "2026-11-21T10:00:05.123456",
	"agent_url": "http://127.0.0.1:19999",
	"agent_version": "9.0.0",
	"agent_last_heartbeat": "2026-11-21T10:00:06.695806",
	"agent_verify_ca_pem": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
	"hardware_manager_version": {"generic_hardware_manager": "1.1"},
	"agent_cached_deploy_steps": {
		"deploy": [
			{"step": "erase_devices_metadata", "priority": 0, "interface": "deploy", "reboot_requested": false, "requires_ramdisk": true},
			{"step": "write_image", "priority": 0, "interface": "deploy", "reboot_requested": false, "requires_ramdisk": true},
			{"step": "inject_files", "priority": 0, "interface": "deploy", "reboot_requested": false, "requires_ramdisk": true,
			 "argsinfo": {"files": {"description": "Files to inject, a list of file structures with keys: path (path to the file), partition (partition specifier), content (base64 encoded string), mode (new file mode) and dirmode (mode for the leaf directory, if created). Merged with the values from node.properties[inject_files].", "required": false},
				"verify_ca": {"description": "Whether to verify TLS certificates. Global agent options are used by default.", "required": false}}}
		],
		"raid": [
			{"step": "apply_configuration", "priority": 0, "interface": "raid", "reboot_requested": false, "requires_ramdisk": true,
			 "argsinfo": {"raid_config": {"description": "The RAID configuration to apply.", "required": true},
				"delete_existing": {"description": "Setting this to 'True' indicates to delete existing RAID configuration prior to creating the new configuration. Default value is 'True'.", "required": false}}}
		]
	},
	"agent_cached_deploy_steps_refreshed": "2026-11-21T10:00:06.720295",
	"agent_cached_clean_steps": {},
	"deploy_progress": {"phase": "write", "bytes_read": 1073741824, "bytes_written": 805306368, "bytes_skipped": 134217728,
		"total_bytes": 2147483648, "rate_bytes_per_sec": 1.2345678e8, "eta_seconds": 9.5, "started_at": 1795255206.448,
		"updated_at": 1795255215.1, "timings": {"download": 4.25}},
	"deploy_timings": {"boot_to_lookup": 8.25, "lookup_to_first_heartbeat": 0.5},
	"deploy_timestamps": {"deploy_started": "2026-11-21T10:00:00.5Z", "agent_booted": "2026-11-21T10:00:05.123456789+02:00"},
	"ramdisk_kernel_params": ["ipa-inspection-collectors=default"],
	"agent_erase_devices_iterations": 1,
	"agent_erase_devices_zeroize": true,
	"agent_continue_if_secure_erase_failed": false,
	"agent_continue_if_ata_erase_failed": false,
	"agent_enable_nvme_secure_erase": true,
	"agent_enable_ata_secure_erase": true,
	"disk_erasure_concurrency": 4,
	"agent_erase_skip_read_only": false,
	"steps_validated": true
}`

// cleaning is a manual cleaning with a reboot between steps and an
// abortable user step, a power change asked for, and inspection data.
const cleaning = `{
	"clean_steps": [
		{"step": "erase_devices", "priority": 10, "interface": "deploy", "abortable": true, "reboot_requested": true,
		 "requires_ramdisk": true, "args": {"zeroize": false}},
		{"step": "update_firmware", "priority": 0, "interface": "management", "args": [1, "two", null, {"<&>": "\u2028"}]}
	],
	"clean_step_index": 0,
	"clean_step_started": false,
	"skip_current_clean_step": true,
	"cleaning_reboot": true,
	"cleaning_finishing": false,
	"user_clean_steps": [{"step": "erase_devices", "interface": "deploy", "args": {"zeroize": false}}],
	"agent_cached_clean_steps": {"deploy": [{"step": "erase_devices", "priority": 10, "interface": "deploy", "abortable": true,
		"reboot_requested": false, "requires_ramdisk": true}], "raid": null, "bios": []},
	"agent_cached_clean_steps_refreshed": "2026-11-21T10:00:27.270000",
	"agent_status": "start", "agent_status_message": "cleaning", "agent_logs_path": "/var/log/rivet/n.tar.gz",
	"agent_heartbeat_pending": "2026-11-21T10:00:28.000000",
	"power_request": {"state": "rebooting", "timeout": 0},
	"inspection_data_received": true,
	"inspection_inventory": {"cpu": {"count": 4}},
	"agent_erase_devices_iterations": 3,
	"disk_erasure_concurrency": 1.0
}`

// servicing is a service with the ramdisk disabled, and deploy and
// service steps asked for.
const servicing = `{
	"service_steps": [{"step": "hold", "priority": 0, "interface": "deploy", "args": {"reason": "x"}, "abortable": false}],
	"service_step_index": -0,
	"service_step_started": true,
	"skip_current_service_step": false,
	"servicing_reboot": false,
	"service_steps_requested": [{"step": "hold", "interface": "deploy", "args": {"reason": "x"}, "extra": 5}],
	"service_disable_ramdisk": true,
	"service_ramdisk_booted": false,
	"user_deploy_steps": [],
	"agent_cached_service_steps": {"deploy": [{"step": "burnin_cpu", "priority": 0, "interface": "deploy",
		"argsinfo": {"d": {"required": false}}, "requires_ramdisk": true}]},
	"deployment_reboot": true,
	"agent_secret_token_pregenerated": true,
	"agent_verify_ca": "/etc/rivet/ca.pem"
}`

// odd are inputs of the right keys with odd values: nulls, case
// variants JSON matches to a field, unknown keys, edge numbers, times
// and wrong shapes.
var odd = []string{
	`{"deploy_steps": null, "deploy_step_index": null, "agent_url": null, "deploy_progress": null}`,
	`{"deploy_steps": [null, {}, {"step": null, "priority": null, "args": null, "abortable": null, "requires_ramdisk": null}]}`,
	`{"deploy_steps": [{"STEP": "a", "step": "b"}, {"Priority": 5}, {"ſtep": "long s"}, {"unknown": 1, "Unknown": [1]}]}`,
	`{"deploy_steps": [{"step": "a", "priority": 1.5}]}`,
	`{"deploy_steps": [{"step": "a", "priority": 1e21}]}`,
	`{"deploy_steps": [{"step": "a", "priority": 9.2233720368547758e18}]}`,
	`{"deploy_steps": [{"step": "a", "priority": -9.2233720368547758e18}]}`,
	`{"deploy_steps": [{"step": "a", "priority": 9.007199254740993e15}]}`,
	`{"deploy_steps": [{"step": 5}]}`,
	`{"deploy_steps": [5]}`,
	`{"deploy_steps": {"a": 1}}`,
	`{"deploy_steps": [{"step": "a", "reboot_requested": "yes"}]}`,
	`{"deploy_steps": [{"step": "a", "args": "text", "argsinfo": 7}]}`,
	`{"deploy_step_index": 1.5}`,
	`{"deploy_step_index": "one"}`,
	`{"deploy_step_index": 1e300}`,
	`{"deploy_step_index": -1}`,
	`{"agent_url": 5}`,
	`{"agent_secret_token_pregenerated": "true"}`,
	`{"is_whole_disk_image": 0}`,
	`{"is_whole_disk_image": false}`,
	`{"hardware_manager_version": {"a": null, "b": 1}}`,
	`{"hardware_manager_version": {}}`,
	`{"hardware_manager_version": []}`,
	`{"deploy_progress": {"phase": 1}}`,
	`{"deploy_progress": {"bytes_read": 1.5}}`,
	`{"deploy_progress": {"Phase": "p", "TIMINGS": {"a": 1}, "other": null}}`,
	`{"deploy_progress": {"timings": null, "phase": null, "bytes_read": null, "eta_seconds": null}}`,
	`{"deploy_progress": {}}`,
	`{"deploy_progress": "write"}`,
	`{"deploy_timings": {}}`,
	`{"deploy_timings": {"a": null, "b": -0}}`,
	`{"deploy_timings": {"a": "1"}}`,
	`{"deploy_timestamps": {"a": null}}`,
	`{"deploy_timestamps": {"a": "2026-11-21T10:00:20Z", "b": "2026-11-21T10:00:20.000000001-07:30"}}`,
	`{"deploy_timestamps": {"a": "2026-11-21 10:00:20"}}`,
	`{"deploy_timestamps": {"a": "2026-11-21T10:00:20.Z"}}`,
	`{"deploy_timestamps": {"a": "2026-11-21T10:00:20<Z"}}`,
	`{"deploy_timestamps": {"a": "2026-11-21T10:00:20z"}}`,
	`{"deploy_timestamps": {"a": "10000-01-01T00:00:00Z"}}`,
	`{"deploy_timestamps": {"a": "2026-11-21T10:00:20+24:00"}}`,
	`{"deploy_timestamps": {"a": 5}}`,
	`{"ramdisk_kernel_params": []}`,
	`{"ramdisk_kernel_params": [null, "a", "<b>"]}`,
	`{"ramdisk_kernel_params": ["a", 1]}`,
	`{"ramdisk_kernel_params": "a"}`,
	`{"power_request": {"state": "power on"}}`,
	`{"power_request": {"STATE": "x", "timeout": null, "extra": true}}`,
	`{"power_request": {"timeout": "5"}}`,
	`{"power_request": []}`,
	`{"agent_cached_deploy_steps": {"deploy": null}}`,
	`{"agent_cached_deploy_steps": {"deploy": [{"step": "a", "requires_ramdisk": 1}]}}`,
	`{"agent_cached_deploy_steps": []}`,
	`{"agent_erase_devices_zeroize": null, "disk_erasure_concurrency": null}`,
	`{"agent_erase_devices_zeroize": false}`,
	`{"agent_erase_devices_zeroize": 1}`,
	`{"agent_erase_devices_iterations": "x"}`,
	`{"agent_erase_devices_iterations": 2.5}`,
	`{"agent_erase_devices_iterations": -3, "agent_erase_skip_read_only": true}`,
	`{"user_clean_steps": [], "user_deploy_steps": null, "service_steps_requested": [{}]}`,
	`{"cleaning_reboot": 1, "deploy_steps": [{"step": 5}]}`,
	`{}`,
}

// sameDecode decodes dii with Decode and the oracle and fails unless
// both agree; it returns Decode's view (nil on an error).
func sameDecode(t *testing.T, dii map[string]any) *Info {
	t.Helper()
	newNode, oldNode := testNode(dii), testNode(dii)
	got, gotErr := Decode(newNode)
	want, wantErr := oldDecode(oldNode)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("Decode error %v, want %v", gotErr, wantErr)
	}
	if got != nil {
		// Each text the memo holds decodes to its value.
		for text, v := range got.raw {
			var want any
			if err := json.Unmarshal([]byte(text), &want); err != nil || !same(v, want) {
				t.Fatalf("memo %s: %#v, JSON decodes %#v (%v)", text, v, want, err)
			}
		}
		exported := *got
		exported.raw = nil
		if !same(&exported, want) {
			t.Fatalf("Decode:\n got %s\nwant %s", dump(got), dump(want))
		}
	} else if want != nil {
		t.Fatalf("Decode: nil, want %s", dump(want))
	}
	if !same(newNode, oldNode) {
		t.Fatal("Decode changed the node")
	}
	return got
}

// sameEncode encodes info into a node holding dii with Encode and the
// oracle, and fails unless both write the same.
func sameEncode(t *testing.T, info *Info, dii map[string]any) {
	t.Helper()
	newNode, oldNode := testNode(dii), testNode(dii)
	before := cloneInfo(info)
	gotErr := info.Encode(newNode)
	wantErr := info.oldEncode(oldNode)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("Encode error %v, want %v", gotErr, wantErr)
	}
	if !same(newNode, oldNode) {
		g, _ := json.Marshal(newNode)
		w, _ := json.Marshal(oldNode)
		t.Fatalf("Encode:\n got %s\nwant %s", g, w)
	}
	if !same(info, before) {
		t.Fatal("Encode changed the info")
	}
}

// same is reflect.DeepEqual but stricter on floats: the same bits, any
// NaN equal to any other (DeepEqual finds NaN unequal to itself, and
// -0 equal to 0).
func same(a, b any) bool { return equal(reflect.ValueOf(a), reflect.ValueOf(b)) }

func equal(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() || a.Type() != b.Type() {
		return a.IsValid() == b.IsValid() && (!a.IsValid() || a.Type() == b.Type())
	}
	switch a.Kind() {
	case reflect.Float64, reflect.Float32:
		x, y := a.Float(), b.Float()
		return math.Float64bits(x) == math.Float64bits(y) || x != x && y != y
	case reflect.Interface, reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equal(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			if y := b.MapIndex(it.Key()); !y.IsValid() || !equal(it.Value(), y) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return reflect.DeepEqual(a.Interface(), b.Interface())
		}
		for i := range a.NumField() {
			if !equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return a.Equal(b)
}

func testNode(dii map[string]any) *store.Node {
	n := &store.Node{UUID: "3f603778-f6c2-4a4d-b205-d2e7b2df5470"}
	if dii != nil {
		n.DriverInternalInfo = cloneAny(dii).(map[string]any)
	}
	return n
}

// cloneAny copies a tree of maps and slices; other values are shared.
func cloneAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, y := range x {
			c[k] = cloneAny(y)
		}
		return c
	case []any:
		if x == nil {
			return x
		}
		c := make([]any, len(x))
		for i, y := range x {
			c[i] = cloneAny(y)
		}
		return c
	}
	return v
}

// cloneInfo deep-copies info.
func cloneInfo(info *Info) *Info {
	c := reflect.New(reflect.TypeFor[Info]())
	deepCopy(c.Elem(), reflect.ValueOf(info).Elem())
	out := c.Interface().(*Info)
	out.raw = info.raw // read only
	return out
}

func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if !src.IsNil() {
			dst.Set(reflect.New(src.Type().Elem()))
			deepCopy(dst.Elem(), src.Elem())
		}
	case reflect.Slice:
		if !src.IsNil() {
			dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
			for i := range src.Len() {
				deepCopy(dst.Index(i), src.Index(i))
			}
		}
	case reflect.Map:
		if !src.IsNil() {
			dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
			for it := src.MapRange(); it.Next(); {
				v := reflect.New(src.Type().Elem()).Elem()
				deepCopy(v, it.Value())
				dst.SetMapIndex(it.Key(), v)
			}
		}
	case reflect.Struct:
		if src.Type() == reflect.TypeFor[time.Time]() {
			dst.Set(src)
			return
		}
		for i := range src.NumField() {
			if src.Type().Field(i).IsExported() {
				deepCopy(dst.Field(i), src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}

func dump(info *Info) string {
	if info == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", *info)
}

func parse(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return m
}

// mutate changes info the ways the engine does, and in odd ways,
// as r says.
func mutate(info *Info, r *rand.Rand) {
	for range r.IntN(4) {
		s := info.Kind([]wire.StepKind{wire.DeployStepKind, wire.CleanStepKind, wire.ServiceStepKind}[r.IntN(3)])
		switch r.IntN(21) {
		case 0:
			info.WipeOnPowerOff()
		case 1:
			s.SetIndex(r.IntN(3))
		case 2:
			s.Forget()
		case 3:
			s.Wipe()
		case 4:
			info.Agent.WipeTokenAndURL()
		case 5:
			s.Plan = append(s.Plan, randomStep(r))
		case 6:
			s.Cached = map[string][]wire.PlannedStep{pick(r, names): {randomStep(r)}, pick(r, names): nil}
		case 7:
			info.Erase = []*EraseSettings{nil, DefaultEraseSettings(), {Iterations: -1 << 62}}[r.IntN(3)]
		case 8:
			info.Image.Timings = map[string]float64{pick(r, names): pick(r, floats)}
		case 9:
			info.Image.Timestamps = map[string]time.Time{pick(r, names): pick(r, times)}
		case 10:
			info.Image.Progress = &wire.Progress{Phase: pick(r, names), BytesRead: int64(r.Uint64()), RateBytesPerSec: pick(r, floats),
				Timings: map[string]float64{pick(r, names): pick(r, floats)}}
		case 11:
			info.PowerRequest = &PowerRequest{State: pick(r, names), Timeout: pick(r, floats)}
		case 12:
			info.KernelParams = []string{pick(r, names), pick(r, names)}
		case 13:
			info.Agent.HardwareManagerVersion = wire.HardwareManagerVersion{pick(r, names): pick(r, names)}
		case 14:
			info.Agent.URL, info.BootMode = pick(r, names), pick(r, names)
		case 15:
			b := r.IntN(2) == 0
			info.Image.WholeDisk, info.CleaningFinishing = &b, b
		case 16:
			info.UserCleanSteps = []wire.PlannedStep{}
		case 17:
			info.Image.Timestamps, info.Image.Timings, info.KernelParams = map[string]time.Time{}, map[string]float64{}, []string{}
		case 18:
			// A step's arguments changed in place.
			for _, p := range s.Plan {
				if len(p.Args) > 2 {
					p.Args[r.IntN(len(p.Args))] = pick(r, []byte(`{}[]",:0 ae`))
				}
			}
		default:
			if len(s.Plan) > 0 {
				s.Plan[r.IntN(len(s.Plan))] = randomStep(r)
			}
		}
	}
}

var (
	names  = []string{"", "deploy", "write_image", "<&>", "bad\xffutf8", "\u2028", "ſtep", "a\"b"}
	floats = []float64{0, math.Copysign(0, -1), 1, -1.5, 1e21, 1e-7, 123456789.125, math.NaN(), math.Inf(1)}
	times  = []time.Time{time.Date(2026, 11, 21, 10, 0, 20, 5e8, time.UTC), {}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 1, time.FixedZone("x", -(7*3600+1800))), time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("y", 25*3600))}
	raws = []json.RawMessage{nil, {}, json.RawMessage("null"), json.RawMessage(`{"a": [1, "<b>"]}`), json.RawMessage(" 5 "),
		json.RawMessage(`{"a":`), json.RawMessage(`"\xff"`), json.RawMessage(`[1] x`)}
)

func pick[T any](r *rand.Rand, from []T) T { return from[r.IntN(len(from))] }

func randomStep(r *rand.Rand) wire.PlannedStep {
	s := wire.PlannedStep{Step: pick(r, names), Interface: pick(r, names), Args: pick(r, raws), ArgsInfo: pick(r, raws),
		RequiresRamdisk: r.IntN(2) == 0}
	if r.IntN(2) == 0 {
		p := r.IntN(200) - 100
		s.Priority = &p
	}
	if r.IntN(2) == 0 {
		b := r.IntN(2) == 0
		s.RebootRequested, s.Abortable = &b, &b
	}
	return s
}

// check holds Decode, then Encode of the view (as decoded and after
// random changes), to the oracle.
func check(t *testing.T, dii map[string]any, seed uint64) {
	t.Helper()
	sameText(t, dii)
	info := sameDecode(t, dii)
	if info == nil {
		return
	}
	sameEncode(t, info, dii)
	// What Encode wrote is the node's own: changing it changes nothing
	// Encode writes next.
	n := testNode(dii)
	if info.Encode(n) == nil {
		scribble(n.DriverInternalInfo)
		scribble(n.DeployStep)
	}
	sameEncode(t, info, nil)
	mutate(info, rand.New(rand.NewPCG(seed, seed)))
	sameEncode(t, info, dii)
}

// sameText fails unless appendJSON writes v as json.Marshal does and
// copies it, or refuses a value that is not plain decoded JSON.
func sameText(t *testing.T, v any) {
	t.Helper()
	text, c, ok := appendJSON([]byte{}, true, v, maxMemoDepth)
	want, err := json.Marshal(v)
	if !ok {
		if isPlain(v) {
			t.Fatalf("appendJSON refused plain %#v", v)
		}
		return
	}
	if err != nil || string(text) != string(want) {
		t.Fatalf("appendJSON:\n got %s\nwant %s (%v)", text, want, err)
	}
	if !same(c, v) {
		t.Fatalf("appendJSON copied %#v as %#v", v, c)
	}
}

// isPlain reports whether JSON text decodes to v (the test's own
// definition of plain decoded JSON).
func isPlain(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	var back any
	return json.Unmarshal(b, &back) == nil && same(back, v) && plainShape(v, maxMemoDepth)
}

// plainShape reports whether v has no nil map or slice and is nested at
// most depth levels.
func plainShape(v any, depth int) bool {
	switch x := v.(type) {
	case map[string]any:
		if x == nil || depth == 0 {
			return false
		}
		for _, y := range x {
			if !plainShape(y, depth-1) {
				return false
			}
		}
	case []any:
		if x == nil || depth == 0 {
			return false
		}
		for _, y := range x {
			if !plainShape(y, depth-1) {
				return false
			}
		}
	}
	return true
}

func TestAppendJSONIsMarshal(t *testing.T) {
	var all strings.Builder
	for c := range rune(0x80) {
		all.WriteRune(c)
	}
	for _, v := range []any{
		all.String(), "\u2028\u2029\ufffd€😀<&>", "", "a\"b\\c",
		0.0, math.Copysign(0, -1), 1e-6, 9.99999e-7, 1e-7, 1.5e-300, 5e-324, 1e20, 1e21, 123456789.123, -1e21, math.MaxFloat64,
		float64(1 << 53), -float64(1 << 60), true, false, nil,
		[]any{}, map[string]any{}, []any{1.0, "x", nil, []any{map[string]any{"b": 1.0, "a": "<", "B": nil, "\u2028": true}}},
	} {
		sameText(t, v)
		if _, _, ok := appendJSON([]byte{}, true, v, maxMemoDepth); !ok {
			t.Errorf("appendJSON refused %#v", v)
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(1), "\xff", []any(nil), map[string]any(nil), map[string]any{"\xff": 1.0}, 1, []string{}} {
		if _, _, ok := appendJSON([]byte{}, true, v, maxMemoDepth); ok {
			t.Errorf("appendJSON took %#v", v)
		}
	}
	deep := any(1.0)
	for range maxMemoDepth + 1 {
		deep = []any{deep}
	}
	if _, _, ok := appendJSON([]byte{}, true, deep, maxMemoDepth); ok {
		t.Error("appendJSON took a value nested too deep")
	}
}

// scribble changes every object and array in v in place.
func scribble(v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Collect(maps.Keys(x)) {
			scribble(x[k])
			x[k+"!"] = "scribbled"
		}
	case []any:
		for i, y := range x {
			scribble(y)
			x[i] = "scribbled"
		}
	}
}

func TestSameAsJSONRoundTrip(t *testing.T) {
	for i, s := range append([]string{ironicDeploy, deploying, cleaning, servicing}, odd...) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dii := parse(t, s)
			for seed := range uint64(50) {
				check(t, dii, seed)
			}
		})
	}
}

// TestSameOnValuesJSONDoesNotDecode: values no JSON text decodes to
// (strings that are not UTF-8, other Go types, non-finite numbers) come
// out as they did.
func TestSameOnValuesJSONDoesNotDecode(t *testing.T) {
	for i, dii := range []map[string]any{
		{"deploy_steps": []any{map[string]any{"step": "bad\xff", "args": map[string]any{"k\xfe": "v\xff"}}}},
		{"deploy_steps": []any{map[string]any{"\xffstep": "a"}}},
		{"hardware_manager_version": map[string]any{"\xff": "a", "\xfe": "b"}},
		{"hardware_manager_version": map[string]any{"a": "\xff"}},
		{"ramdisk_kernel_params": []any{"\xff"}},
		{"deploy_timings": map[string]any{"a": math.NaN()}},
		{"deploy_timings": map[string]any{"a": 1}},
		{"deploy_step_index": int(3)},
		{"deploy_step_index": math.Inf(-1)},
		{"deploy_steps": []any(nil)},
		{"agent_cached_deploy_steps": map[string]any{"deploy": []any(nil)}},
		{"deploy_steps": []map[string]any{{"step": "a"}}},
		{"agent_url": "\xff", "deploy_boot_mode": []byte("x")},
		{"deploy_timestamps": map[string]any{"a": "2026-11-21T10:00:20\xffZ"}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for seed := range uint64(20) {
				check(t, dii, seed)
			}
		})
	}
}

// TestSameOnRandomInputs: random keys of Info with random values, of
// the key's shape or any.
func TestSameOnRandomInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := []map[string]any{parse(t, deploying), parse(t, cleaning), parse(t, servicing)}
	for i := range 3000 {
		dii := map[string]any{}
		for _, shape := range shapes {
			for k, v := range shape {
				if r.IntN(3) == 0 {
					dii[k] = perturb(r, cloneAny(v), 3)
				}
			}
		}
		check(t, dii, uint64(i))
		if t.Failed() {
			return
		}
	}
}

// perturb changes the odd value of v, depth levels down.
func perturb(r *rand.Rand, v any, depth int) any {
	if depth == 0 || r.IntN(4) == 0 {
		return randomJSON(r, 2)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			switch r.IntN(6) {
			case 0:
				delete(x, k)
			case 1:
				x[strings.ToUpper(k)] = y
			default:
				x[k] = perturb(r, y, depth-1)
			}
		}
	case []any:
		for i, y := range x {
			x[i] = perturb(r, y, depth-1)
		}
	}
	return v
}

func randomJSON(r *rand.Rand, depth int) any {
	switch n := r.IntN(8); {
	case n == 0:
		return nil
	case n == 1:
		return r.IntN(2) == 0
	case n == 2:
		return pick(r, []float64{0, -1, 1.5, 3, 1e21, 9.2233720368547758e18, 1795255206.448, 1e-7})
	case n == 3:
		return pick(r, []string{"", "x", "2026-11-21T10:00:20.5Z", "<&>", "\u2028", "a\"b\\"})
	case n == 4 && depth > 0:
		a := make([]any, r.IntN(3))
		for i := range a {
			a[i] = randomJSON(r, depth-1)
		}
		return a
	case depth > 0:
		m := map[string]any{}
		for range r.IntN(4) {
			m[pick(r, append(stepNames, "x", "Step", "phase", "state", "timeout"))] = randomJSON(r, depth-1)
		}
		return m
	}
	return "leaf"
}

// FuzzDecodeEncode holds Decode and Encode to the oracle on any JSON
// object.
func FuzzDecodeEncode(f *testing.F) {
	for _, s := range append([]string{ironicDeploy, deploying, cleaning, servicing}, odd...) {
		f.Add([]byte(s), uint64(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		var dii map[string]any
		if json.Unmarshal(data, &dii) != nil {
			return
		}
		check(t, dii, seed)
	})
}

// BenchmarkDecodeEncode is a node transaction's work on a deploying
// node's driver_internal_info, with the oracle as "json".
func BenchmarkDecodeEncode(b *testing.B) {
	dii := parse(b, deploying)
	b.Run("json", func(b *testing.B) {
		n := testNode(dii)
		b.ReportAllocs()
		for b.Loop() {
			info, err := oldDecode(n)
			if err != nil {
				b.Fatal(err)
			}
			if err := info.oldEncode(n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		n := testNode(dii)
		b.ReportAllocs()
		for b.Loop() {
			info, err := Decode(n)
			if err != nil {
				b.Fatal(err)
			}
			if err := info.Encode(n); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestFieldNamesAreTheTags: the names the step, progress and power
// request decoders know are the JSON names of the structs' fields (a
// field added to wire must be decoded by hand too).
func TestFieldNamesAreTheTags(t *testing.T) {
	for typ, names := range map[reflect.Type][]string{reflect.TypeFor[wire.PlannedStep](): stepNames,
		reflect.TypeFor[wire.Progress](): progressNames, reflect.TypeFor[PowerRequest](): powerRequestNames} {
		var tags []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			tags = append(tags, name)
		}
		if !slices.Equal(tags, names) {
			t.Errorf("%s: JSON names %v, decoded %v", typ, tags, names)
		}
	}
}
