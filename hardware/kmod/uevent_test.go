package kmod

import (
	"errors"
	"testing"
)

func TestParseUevent(t *testing.T) {
	msg := "add@/devices/pci0000:00/0000:00:03.0/virtio0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:03.0/virtio0\x00" +
		"SUBSYSTEM=virtio\x00MODALIAS=virtio:d00000001v00001AF4\x00SEQNUM=1234\x00"
	ev, err := ParseUevent([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Action != "add" || ev.DevPath != "/devices/pci0000:00/0000:00:03.0/virtio0" || ev.Subsystem != "virtio" ||
		ev.Modalias != "virtio:d00000001v00001AF4" || ev.Seqnum != 1234 || len(ev.Env) != 5 {
		t.Errorf("event = %+v", ev)
	}
	// Header only: action and devpath still come through.
	ev, err = ParseUevent([]byte("remove@/devices/virtual/block/loop3\x00"))
	if err != nil || ev.Action != "remove" || ev.DevPath != "/devices/virtual/block/loop3" {
		t.Errorf("header-only event = %+v, %v", ev, err)
	}
	for _, bad := range []string{"libudev\x00\xfe\xed\xca\xfe", "", "add@relative\x00", "@/devices\x00"} {
		if _, err := ParseUevent([]byte(bad)); !errors.Is(err, ErrNotKernelEvent) {
			t.Errorf("ParseUevent(%q) err = %v, want ErrNotKernelEvent", bad, err)
		}
	}
	if _, err := ParseUevent([]byte("add@/devices/x\x00SEQNUM=x1\x00")); err == nil {
		t.Error("bad SEQNUM: no error")
	}
}
