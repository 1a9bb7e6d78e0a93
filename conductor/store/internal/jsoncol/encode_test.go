package jsoncol

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
)

// stdEncode is a column's text as encoding/json writes it: what Encode
// must write.
func stdEncode(t testing.TB, m map[string]any) (string, error) {
	t.Helper()
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// TestEncodeIsEncodingJSON checks Encode against encoding/json on the
// values that reach a column: decoded JSON (numbers as float64 or
// json.Number), what code puts in maps (ints, typed slices and maps,
// json.RawMessage, times, structs), text JSON must escape or repair, and
// values JSON cannot encode (an error, as with encoding/json).
func TestEncodeIsEncodingJSON(t *testing.T) {
	type step struct {
		Step     string         `json:"step"`
		Priority int            `json:"priority,omitempty"`
		Args     map[string]any `json:"args"`
	}
	cases := map[string]map[string]any{
		"decoded": {"b": true, "a": nil, "n": 1.5, "big": 1e21, "small": 1e-7, "neg": math.Copysign(0, -1),
			"list": []any{"x", 2.0, map[string]any{"z": 1.0, "y": []any{}}}, "empty": map[string]any{}},
		"numbers":  {"int": 3, "int64": int64(-1) << 62, "uint8": uint8(255), "float32": float32(0.1), "number": json.Number("12.50")},
		"escapes":  {"html": "<a href='x'>&</a>", "ls": "a\u2028b\u2029c", "ctl": "\x00\x1f\t\n\"\\", "bad utf8": "x\xffy\xc3", "ключ<>": "значение"},
		"typed":    {"strings": []string{"b", "a"}, "nilslice": []string(nil), "ints": map[string]int{"b": 2, "a": 1}, "bytes": []byte("hi")},
		"raw":      {"raw": json.RawMessage(` { "b" : [1, 2] , "a":null } `)},
		"time":     {"at": time.Date(2026, 12, 6, 4, 0, 0, 123, time.UTC)},
		"struct":   {"step": step{Step: "write_image", Args: map[string]any{"k": "v"}}, "ptr": &step{Priority: 5}},
		"nan":      {"x": math.NaN()},
		"inf":      {"x": math.Inf(-1)},
		"badraw":   {"raw": json.RawMessage(`{"a":`)},
		"chan":     {"c": make(chan int)},
		"longtext": {"s": strings.Repeat("é<", 5000)},
	}
	for name, m := range cases {
		want, wantErr := stdEncode(t, m)
		got, err := Encode(m)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v; encoding/json: %v", name, err, wantErr)
			continue
		}
		if err == nil && got != want {
			t.Errorf("%s: Encode = %s\nencoding/json = %s", name, got, want)
		}
	}
}

// TestEncodeAttributesIsEncodingJSON checks the attributes column against
// encoding/json for node and port attributes, empty and set.
func TestEncodeAttributesIsEncodingJSON(t *testing.T) {
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	for _, v := range []any{store.NodeAttributes{}, store.PortAttributes{}, sampleNodeAttributes(now)} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeAttributes(v)
		if err != nil || got != string(want) {
			t.Errorf("EncodeAttributes(%T) = %s, %v; encoding/json = %s", v, got, err, want)
		}
	}
}

// FuzzEncodeIsEncodingJSON compares Encode with encoding/json on any JSON
// text decoded both ways JSON columns are (float64 and json.Number
// numbers), and on any string as a key and a value.
func FuzzEncodeIsEncodingJSON(f *testing.F) {
	f.Add([]byte(`{"a":[1,2.5e-7,1e21,"<&>\u2028"],"b":{"z":null,"a":true}}`), "x\xff<\u2029")
	f.Add([]byte(`{"deploy_steps":[{"step":"write_image","args":{"image_info":{"id":"x"}},"priority":80}]}`), "")
	f.Fuzz(func(t *testing.T, data []byte, s string) {
		check := func(what string, m map[string]any) {
			want, wantErr := stdEncode(t, m)
			got, err := Encode(m)
			if (err != nil) != (wantErr != nil) || got != want {
				t.Fatalf("%s %q: Encode = %q, %v; encoding/json = %q, %v", what, data, got, err, want, wantErr)
			}
		}
		var m map[string]any
		if json.Unmarshal(data, &m) == nil {
			check("decoded", m)
		}
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var n map[string]any
		if d.Decode(&n) == nil {
			check("decoded with numbers", n)
		}
		check("string", map[string]any{s: s, "k": []any{s, 1.0 / 3, float64(len(s)) * 1e-9}})
	})
}

// sampleNodeAttributes sets every kind of field the attributes hold.
func sampleNodeAttributes(now time.Time) store.NodeAttributes {
	yes := true
	return store.NodeAttributes{AutomatedClean: &yes, DisablePowerOff: true,
		NetworkData: map[string]any{"links": []any{map[string]any{"id": "eth0", "mtu": 9000.0}}},
		Protected:   true, ProtectedReason: "<prod & co>", Lessee: "p", Traits: []string{"CUSTOM_B", "CUSTOM_A"},
		Interfaces:       map[string]string{"power": "ipmitool", "deploy": "direct"},
		TargetRAIDConfig: map[string]any{"logical_disks": []any{}}, InstanceName: now.Format(time.RFC3339)}
}

// BenchmarkEncode encodes a deploying node's driver_internal_info (its
// largest column, changed by every transaction) with Encode and, in the
// same run, with encoding/json: the work Encode replaces.
func BenchmarkEncode(b *testing.B) {
	var m map[string]any
	if err := Decode(deployingInternalInfo, &m); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		encode func(map[string]any) (string, error)
	}{
		{"Encode", Encode},
		{"encoding-json", func(m map[string]any) (string, error) { return stdEncode(b, m) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.encode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// deployingInternalInfo is the driver_internal_info of a node the load
// benchmark deploys, while its agent writes the image (1.6 KB).
const deployingInternalInfo = `{"agent_cached_deploy_steps":{"deploy":[{"args":{},"interface":"deploy","priority":100,"reboot_requested":false,"step":"deploy"},{"args":{},"interface":"deploy","priority":80,"reboot_requested":false,"step":"write_image"},{"args":{},"interface":"deploy","priority":40,"reboot_requested":false,"step":"prepare_instance_boot"},{"args":{},"interface":"deploy","priority":20,"reboot_requested":false,"step":"tear_down_agent"},{"args":{},"interface":"deploy","priority":0,"reboot_requested":false,"step":"switch_to_tenant_network"}]},"agent_cached_deploy_steps_refreshed":"2026-12-06T04:00:00.123456","agent_last_heartbeat":"2026-12-06T04:00:01.654321","agent_secret_token":"tok-0123456789abcdef0123456789abcdef012","agent_url":"http://127.0.0.1:40000/agent/17","agent_version":"10.0.0","agent_verify_ca":"","deploy_boot_mode":"uefi","deploy_step_index":1,"deploy_steps":[{"args":{},"interface":"deploy","priority":100,"step":"deploy"},{"args":{"image_info":{"id":"img","urls":["http://127.0.0.1:6385/images/x.raw"]}},"interface":"deploy","priority":80,"step":"write_image"},{"args":{},"interface":"deploy","priority":40,"step":"prepare_instance_boot"}],"deploy_progress":{"bytes_read":1048576,"bytes_written":1048576,"phase":"download","rate_bytes_per_second":52428800,"updated_at":1733457600},"hardware_manager_version":{"generic_hardware_manager":"1.2"},"is_whole_disk_image":true,"lookup_bmc_address":"","root_uuid_or_disk_id":"0x1a2b3c4d","steps_validated":true}`
