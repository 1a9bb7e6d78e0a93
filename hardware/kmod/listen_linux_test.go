package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rivetmetal/rivet/internal/loopdev"
)

// TestListenRealUevent receives a real kernel uevent: the test attaches a
// loop device and asks the kernel to announce it again with a synthetic
// "change" event tagged with a UUID of its own (Linux 4.13+), then waits
// for that event on the socket.
func TestListenRealUevent(t *testing.T) {
	dev := loopdev.New(t, 1<<20)
	lis, err := Listen()
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer lis.Close()
	id := uuid.NewString()
	trigger := filepath.Join("/sys/block", dev.Name(), "uevent")
	if err := os.WriteFile(trigger, []byte(fmt.Sprintf("change %s RIVET=kmodtest", id)), 0o200); err != nil {
		t.Fatalf("trigger a uevent: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ev, err := lis.Next(ctx)
		if err != nil {
			t.Fatalf("no uevent tagged %s for %s: %v", id, dev.Name(), err)
		}
		if ev.Env["SYNTH_UUID"] != id {
			continue
		}
		if ev.Action != "change" || ev.Subsystem != "block" || filepath.Base(ev.DevPath) != dev.Name() ||
			ev.Env["SYNTH_ARG_RIVET"] != "kmodtest" || ev.Seqnum == 0 {
			t.Errorf("event = %+v", ev)
		}
		break
	}
	// Next returns when its context ends, with the context's error, and
	// the listener stays usable.
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	for {
		_, err := lis.Next(short)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("Next after deadline: %v", err)
		}
	}
}
