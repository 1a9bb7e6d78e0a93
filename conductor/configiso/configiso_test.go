package configiso

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// isoReader reads files of an ISO image the way a Linux guest does: with
// the kernel's isofs (loop mount, as root), else with isoinfo's Rock
// Ridge reader; it skips the test when neither is available.
func isoReader(t *testing.T, img []byte) func(p string) (string, bool) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cd.iso")
	if err := os.WriteFile(p, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-o", "loop,ro", "-t", "iso9660", p, mnt).CombinedOutput(); err == nil {
			t.Cleanup(func() { exec.Command("umount", mnt).Run() })
			return func(name string) (string, bool) {
				b, err := os.ReadFile(filepath.Join(mnt, name))
				return string(b), err == nil
			}
		} else {
			t.Logf("loop mount failed (%v: %s); trying isoinfo", err, out)
		}
	}
	isoinfo, err := exec.LookPath("isoinfo")
	if err != nil {
		t.Skip("cannot read ISO 9660 images here: not root (no loop mount) and no isoinfo (Debian genisoimage)")
	}
	return func(name string) (string, bool) {
		out, err := exec.Command(isoinfo, "-R", "-i", p, "-x", "/"+strings.TrimPrefix(name, "/")).Output()
		return string(out), err == nil && len(out) > 0
	}
}

func TestBuildWritesOpenStackTree(t *testing.T) {
	cd := map[string]any{
		"meta_data":    map[string]any{"hostname": "web-1", "public_keys": map[string]any{"k": "ssh-ed25519 AAAA"}},
		"user_data":    map[string]any{"runcmd": []any{"echo hi"}},
		"network_data": map[string]any{"links": []any{}},
		"vendor_data":  map[string]any{"v": 1},
	}
	enc, err := Build(cd, Node{UUID: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", Name: "n1"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	read := isoReader(t, img)
	for _, v := range Versions {
		dir := "openstack/" + v + "/"
		raw, ok := read(dir + "meta_data.json")
		if !ok {
			t.Fatalf("no %smeta_data.json", dir)
		}
		var meta map[string]any
		if err := json.Unmarshal([]byte(raw), &meta); err != nil {
			t.Fatal(err)
		}
		if meta["uuid"] != "1be26c0b-03f2-4d2e-ae87-c02d7f33c123" || meta["name"] != "n1" || meta["hostname"] != "web-1" {
			t.Errorf("%smeta_data.json = %v", dir, meta)
		}
		if ud, _ := read(dir + "user_data"); ud != `{"runcmd":["echo hi"]}` {
			t.Errorf("%suser_data = %q", dir, ud)
		}
		if nd, _ := read(dir + "network_data.json"); nd != `{"links":[]}` {
			t.Errorf("%snetwork_data.json = %q", dir, nd)
		}
		if vd, _ := read(dir + "vendor_data2.json"); vd != `{"v":1}` {
			t.Errorf("%svendor_data2.json = %q", dir, vd)
		}
	}
	// The label cloud-init looks for, as blkid reads it.
	if blkid, err := exec.LookPath("blkid"); err == nil {
		p := filepath.Join(t.TempDir(), "cd.iso")
		os.WriteFile(p, img, 0o600)
		out, err := exec.Command(blkid, "-p", "-o", "value", "-s", "LABEL", p).Output()
		if err != nil || strings.TrimSpace(string(out)) != Label {
			t.Errorf("blkid LABEL = %q, %v", out, err)
		}
	} else {
		t.Log("blkid not installed: label not checked")
	}
}

func TestBuildDefaultsAndStringUserData(t *testing.T) {
	enc, err := Build(map[string]any{"meta_data": map[string]any{"uuid": "mine"}, "user_data": "#!/bin/sh\necho hi\n"},
		Node{UUID: "u"}, "")
	if err != nil {
		t.Fatal(err)
	}
	img, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	read := isoReader(t, img)
	if raw, _ := read("openstack/latest/meta_data.json"); raw != `{"uuid":"mine"}` {
		t.Errorf("meta_data.json = %s (uuid given, no name)", raw)
	}
	if ud, _ := read("openstack/latest/user_data"); ud != "#!/bin/sh\necho hi\n" {
		t.Errorf("user_data = %q", ud)
	}
	if _, ok := read("openstack/latest/network_data.json"); ok {
		t.Error("network_data.json written although not given")
	}
}

func TestNormalize(t *testing.T) {
	for _, s := range []string{"http://10.0.0.1/cd.iso.gz", "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA"} {
		if got, err := Normalize(s, Node{UUID: "u"}, ""); err != nil || got != s {
			t.Errorf("Normalize(%q) = %q, %v", s, got, err)
		}
	}
	// gzip of nothing decodes to an empty drive, which the agent refuses.
	for _, bad := range []any{"", "H4sIAAAAAAAA/wMAAAAAAAAAAAA=", 42, []any{"x"}, map[string]any{"bogus": 1}, map[string]any{"meta_data": "x"},
		map[string]any{"user_data": 3}, map[string]any{"network_data": []any{}}} {
		if _, err := Normalize(bad, Node{UUID: "u"}, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%v) = %v, want ErrInvalid", bad, err)
		}
	}
	enc, err := Normalize(map[string]any{}, Node{UUID: "u", Name: "n"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(enc); err != nil {
		t.Fatalf("empty description: %v", err)
	}
	if _, err := Decode("not base64!"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Decode junk: %v", err)
	}
}
