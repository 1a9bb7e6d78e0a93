package lldp

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// debianPython is the interpreter Debian's python3-ironic-inspector is
// installed for.
const debianPython = "/usr/bin/python3"

// TestAgainstIronic runs ironic-inspector's LLDP parser, the one Ironic's
// parse_lldp hook uses, over the golden cases: it gives the expected
// parsed_lldp entry wherever the case says Ironic agrees, and something
// else (a crash or a wrong value) where the case says why not.
func TestAgainstIronic(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import ironic_inspector.common.lldp_parsers").Run(); err != nil {
		vmtest.Unavailable(t, "ironic-inspector's LLDP parser not importable by %s (scripts/install-deps.sh test): %v", debianPython, err)
	}
	cases, raw := loadGolden(t)
	cmd := exec.Command(debianPython, "testdata/ironic_parse.py")
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ironic_parse.py: %v\n%s", err, stderr.String())
	}
	var results []struct {
		Parsed json.RawMessage `json:"parsed"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(cases) {
		t.Fatalf("ironic_parse.py printed %s: %v", out, err)
	}
	for i, c := range cases {
		r := results[i]
		agrees := r.Error == "" && sameJSON(t, r.Parsed, c.Parsed)
		switch {
		case c.Ironic == "same" && !agrees:
			t.Errorf("%s: Ironic gives %s%s, want %s", c.Name, r.Parsed, r.Error, c.Parsed)
		case c.Ironic != "same" && agrees:
			t.Errorf("%s: Ironic now agrees; mark the case same and update docs/inspection.md", c.Name)
		case c.Ironic != "same":
			t.Logf("%s: Ironic gives %s%s (%s)", c.Name, r.Parsed, r.Error, c.Ironic)
		}
	}
}
