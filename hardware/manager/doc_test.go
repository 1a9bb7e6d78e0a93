package manager

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocExampleIsCompiled keeps the worked example of
// docs/hardware-managers.md identical to example_test.go, which go test
// compiles and runs.
func TestDocExampleIsCompiled(t *testing.T) {
	doc, err := os.ReadFile("../../docs/hardware-managers.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)\n```go\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	found := false
	for _, b := range blocks {
		if strings.Contains(b[1], "func (m MagicStore) EraseDevice") {
			found = true
			if !strings.Contains(string(src), b[1]) {
				t.Errorf("the worked example in docs/hardware-managers.md differs from example_test.go:\n%s", b[1])
			}
		}
	}
	if !found {
		t.Error("docs/hardware-managers.md has no worked example")
	}
}
