package jsonpatch

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestApply(t *testing.T) {
	tests := []struct {
		name, doc, patch, want string
		wantErr                bool
	}{
		{"add nested", `{"instance_info":{}}`, `[{"op":"add","path":"/instance_info/image_source","value":"http://x/d.raw"}]`,
			`{"instance_info":{"image_source":"http://x/d.raw"}}`, false},
		{"replace top", `{"name":"a"}`, `[{"op":"replace","path":"/name","value":"b"}]`, `{"name":"b"}`, false},
		{"replace missing", `{"extra":{}}`, `[{"op":"replace","path":"/extra/x","value":1}]`, ``, true},
		{"remove", `{"extra":{"a":1,"b":2}}`, `[{"op":"remove","path":"/extra/a"}]`, `{"extra":{"b":2}}`, false},
		{"remove missing", `{"extra":{}}`, `[{"op":"remove","path":"/extra/a"}]`, ``, true},
		{"escaped key", `{"extra":{}}`, `[{"op":"add","path":"/extra/a~1b~0c","value":true}]`, `{"extra":{"a/b~c":true}}`, false},
		{"array append and insert", `{"l":[1,3]}`, `[{"op":"add","path":"/l/-","value":4},{"op":"add","path":"/l/1","value":2}]`, `{"l":[1,2,3,4]}`, false},
		{"add into missing parent", `{}`, `[{"op":"add","path":"/a/b","value":1}]`, ``, true},
		{"unsupported op", `{}`, `[{"op":"move","path":"/a","from":"/b"}]`, ``, true},
		{"add without value", `{}`, `[{"op":"add","path":"/a"}]`, ``, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			var ops []Op
			json.Unmarshal([]byte(tc.doc), &doc)
			if err := json.Unmarshal([]byte(tc.patch), &ops); err != nil {
				t.Fatal(err)
			}
			got, err := Apply(doc, ops)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Apply = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			json.Unmarshal([]byte(tc.want), &want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Apply = %v, want %v", got, want)
			}
		})
	}
}
