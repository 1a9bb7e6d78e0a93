package kmod

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Event is a kernel uevent: a device added, removed, bound to a driver ...
type Event struct {
	// Action is "add", "remove", "change", "bind", "unbind", "move",
	// "online" or "offline".
	Action string
	// DevPath is the device's path under /sys ("/devices/pci0000:00/...").
	DevPath string
	// Subsystem is the device's bus or class ("pci", "scsi", "virtio").
	Subsystem string
	// Modalias is the device's module alias, "" if it has none.
	Modalias string
	// Seqnum is the kernel's event sequence number.
	Seqnum uint64
	// Env holds every KEY=VALUE of the event.
	Env map[string]string
}

// ErrNotKernelEvent is returned for a message that is not a kernel uevent
// (udev's re-broadcasts start with "libudev").
var ErrNotKernelEvent = errors.New("not a kernel uevent")

// ParseUevent decodes one kernel uevent message: "ACTION@DEVPATH" and
// KEY=VALUE fields, each NUL-terminated.
func ParseUevent(msg []byte) (Event, error) {
	fields := bytes.Split(bytes.TrimRight(msg, "\x00"), []byte{0})
	head := string(fields[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Event{}, fmt.Errorf("kmod: uevent header %q: %w", truncate(head, 64), ErrNotKernelEvent)
	}
	ev := Event{Env: make(map[string]string, len(fields)-1)}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok || k == "" {
			continue
		}
		ev.Env[k] = v
	}
	ev.Action, ev.DevPath = ev.Env["ACTION"], ev.Env["DEVPATH"]
	if ev.Action == "" {
		ev.Action = action
	}
	if ev.DevPath == "" {
		ev.DevPath = devpath
	}
	ev.Subsystem, ev.Modalias = ev.Env["SUBSYSTEM"], ev.Env["MODALIAS"]
	if s := ev.Env["SEQNUM"]; s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Event{}, fmt.Errorf("kmod: uevent SEQNUM %q: %w", truncate(s, 32), err)
		}
		ev.Seqnum = n
	}
	return ev, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
