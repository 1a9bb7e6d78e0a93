package bootloader

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestByUUIDLinks: the links udev would have made for the root (and ESP)
// are made where missing, pointing at the partition's node, and only
// those are removed afterwards; a partition without a node in /dev, a
// link already there and a UUID that is not a file name are left alone.
func TestByUUIDLinks(t *testing.T) {
	root := t.TempDir()
	dev := filepath.Join(root, "dev")
	byUUID := filepath.Join(dev, "disk", "by-uuid")
	for _, name := range []string{"sda1", "sda2"} {
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dev, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(byUUID, 0o755); err != nil {
		t.Fatal(err)
	}
	// udev's own link for the ESP is kept as it is.
	if err := os.Symlink("../../sda2", filepath.Join(byUUID, "ABCD-1234")); err != nil {
		t.Fatal(err)
	}
	in := &Installer{DevRoot: root, Log: quiet()}
	made := in.byUUIDLinks(map[string]string{
		"9f0c1d2e-3b4a-4c5d-8e6f-708192a3b4c5": "sda1", // root: made
		"ABCD-1234":                            "sda2", // already there
		"11111111-2222-3333-4444-555555555555": "sdb1", // no node in /dev
		"../../etc":                            "sda1", // not a file name
		"":                                     "sda1",
	})
	want := []string{filepath.Join(byUUID, "9f0c1d2e-3b4a-4c5d-8e6f-708192a3b4c5")}
	if !slices.Equal(made, want) {
		t.Fatalf("made %q, want %q", made, want)
	}
	if target, err := os.Readlink(want[0]); err != nil || target != "../../sda1" {
		t.Fatalf("link → %q, %v", target, err)
	}
	if _, err := os.Stat(want[0]); err != nil {
		t.Fatalf("the link does not resolve to the partition: %v", err)
	}
	in.removeLinks(made)
	entries, _ := os.ReadDir(byUUID)
	if len(entries) != 1 || entries[0].Name() != "ABCD-1234" {
		t.Fatalf("after removal %s holds %v; want only udev's ESP link", byUUID, entries)
	}
}
