package e2e

import (
	"os"
	"testing"

	"github.com/rivetmetal/rivet/internal/ipmisim"
)

func TestMain(m *testing.M) {
	// ipmi_sim runs this test binary as its chassis-control helper (the
	// virtual rack's BMCs).
	ipmisim.RunHelper()
	os.Exit(m.Run())
}
