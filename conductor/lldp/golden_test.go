package lldp

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/rivetmetal/rivet/wire"
)

// goldenCase is one case of testdata/golden.json (see its README).
type goldenCase struct {
	Name     string          `json:"name"`
	Ironic   string          `json:"ironic"`
	TLVs     []wire.LLDPTLV  `json:"tlvs"`
	Parsed   json.RawMessage `json:"parsed"`
	Problems int             `json:"problems"`
}

func loadGolden(t *testing.T) ([]goldenCase, []byte) {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	return cases, b
}

// sameJSON compares two JSON documents by value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// TestGolden parses every golden case: the JSON of the result is the
// expected parsed_lldp entry, key for key and type for type, and the
// malformed TLVs are reported, one problem each.
func TestGolden(t *testing.T) {
	cases, _ := loadGolden(t)
	for _, c := range cases {
		n, problems := Parse(c.TLVs)
		got, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, got, c.Parsed) {
			t.Errorf("%s:\n got %s\nwant %s", c.Name, got, c.Parsed)
		}
		if len(problems) != c.Problems {
			t.Errorf("%s: %d problems, want %d: %v", c.Name, len(problems), c.Problems, problems)
		}
	}
}
