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
