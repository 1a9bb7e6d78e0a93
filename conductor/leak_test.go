package conductor_test

import (
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// TestNoGoroutineLeft runs a whole deploy, stops everything, and checks
// that no goroutine survives.
func TestNoGoroutineLeft(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()

	h := conductortest.New(t, fakeagent.Config{WriteDuration: 100 * time.Millisecond})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	h.Close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		http.DefaultClient.CloseIdleConnections()
		if runtime.NumGoroutine() <= before {
			return
		}
		if time.Now().After(deadline) {
			var sb strings.Builder
			pprof.Lookup("goroutine").WriteTo(&sb, 1)
			t.Fatalf("%d goroutines before, %d after shutdown:\n%s", before, runtime.NumGoroutine(), sb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
