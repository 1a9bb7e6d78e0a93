package imageinfo

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

func TestValidateInstanceInfo(t *testing.T) {
	const sum = "7d09c666a563e083570792f9737770144f42ed9f2fdf69fb55f711f6c4f86ef8"
	tests := []struct {
		name    string
		ii      map[string]any
		wantErr string
	}{
		{"os hash", map[string]any{"image_source": "http://h/disk.raw", "image_os_hash_algo": "sha256", "image_os_hash_value": sum}, ""},
		{"legacy checksum", map[string]any{"image_source": "https://h/disk.raw", "image_checksum": sum}, ""},
		{"checksum URL", map[string]any{"image_source": "http://h/disk.raw", "image_checksum": "http://h/SHA256SUMS"}, ""},
		{"no source", map[string]any{}, "Missing are: ['image_source']"},
		{"glance", map[string]any{"image_source": "1215c45f-5c01-4883-84e1-a2a82a7c8a52", "image_checksum": sum}, "not an http(s) URL"},
		{"no checksum", map[string]any{"image_source": "http://h/disk.raw"}, "Unable to verify image"},
		{"half hash", map[string]any{"image_source": "http://h/disk.raw", "image_checksum": sum, "image_os_hash_algo": "sha256"}, "must be set together"},
		{"partition", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "partition", "root_gb": 10}, ""},
		{"partition by kernel", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "kernel": "http://h/k", "ramdisk": "http://h/r", "root_gb": "4"}, ""},
		{"partition without root_gb", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "partition"}, "Missing are: ['root_gb']"},
		{"partition zero root", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "partition", "root_gb": 0}, "positive"},
		{"partition bad swap", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "partition", "root_gb": 1, "swap_mb": "lots"}, "swap_mb"},
		{"partition negative ephemeral", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "partition", "root_gb": 1, "ephemeral_gb": -1}, "negative"},
		{"bad image_type", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "lvm"}, "neither"},
		{"dict configdrive", map[string]any{"image_source": "http://h/disk.raw", "image_checksum": sum, "configdrive": map[string]any{"user_data": "x"}}, "configdrive must be a string"},
		{"file source, no cache", map[string]any{"image_source": "file:///srv/disk.raw", "image_checksum": sum}, "has no image cache"},
		{"cached download, no cache", map[string]any{"image_source": "http://h/disk.raw", "image_checksum": sum, "image_download_source": "http"}, "has no image cache"},
		{"file source, cache", map[string]any{"image_source": "file:///srv/disk.raw", "image_checksum": sum, "cache": true}, ""},
		{"cached download, cache", map[string]any{"image_source": "http://h/disk.raw", "image_checksum": sum, "image_download_source": "local", "cache": true}, ""},
		{"ftp source, cache", map[string]any{"image_source": "ftp://h/disk.raw", "image_checksum": sum, "image_download_source": "http", "cache": true}, "neither an http(s) nor a file://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache, _ := tc.ii["cache"].(bool)
			delete(tc.ii, "cache")
			err := Validate(&store.Node{InstanceInfo: tc.ii}, cache)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want InvalidArgument containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBuildImageInfo(t *testing.T) {
	n := &store.Node{
		UUID: "1215c45f-5c01-4883-84e1-a2a82a7c8a52",
		InstanceInfo: map[string]any{
			"image_source":        "http://127.0.0.1:6385/images/disk.raw",
			"image_url":           "http://127.0.0.1:6385/images/disk.raw",
			"image_disk_format":   "raw",
			"image_checksum":      "http://127.0.0.1:6385/images/SHA256SUMS",
			"image_os_hash_algo":  "sha256",
			"image_os_hash_value": "abc",
		},
		DriverInfo: map[string]any{"image_http_proxy": "http://proxy:3128", "image_no_proxy": "10.0.0.1"},
	}
	nodeView := func(u string) (string, error) {
		return strings.Replace(u, "127.0.0.1:6385", "10.0.2.100:6385", 1), nil
	}
	info, err := Build(n, nodeView, "uefi")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(info)
	want := `{"id":"disk.raw","urls":["http://10.0.2.100:6385/images/disk.raw"],"disk_format":"raw","container_format":null,` +
		`"stream_raw_images":true,"checksum":"http://10.0.2.100:6385/images/SHA256SUMS","os_hash_algo":"sha256","os_hash_value":"abc",` +
		`"proxies":{"http":"http://proxy:3128"},"no_proxy":"10.0.0.1","node_uuid":"1215c45f-5c01-4883-84e1-a2a82a7c8a52"}`
	if string(b) != want {
		t.Fatalf("image_info =\n%s\nwant\n%s", b, want)
	}
}

func TestBuildPartitionImageInfo(t *testing.T) {
	n := &store.Node{
		UUID: "3f603778-f6c2-4a4d-b205-d2e7b2df5470",
		InstanceInfo: map[string]any{
			"image_source": "http://127.0.0.1:18089/part.raw", "image_disk_format": "raw",
			"image_os_hash_algo": "sha256", "image_os_hash_value": "246f", "image_type": "partition",
			"root_gb": 1, "swap_mb": "512", "ephemeral_gb": 2,
		},
		Properties: map[string]any{"capabilities": "boot_mode:bios,disk_label:msdos"},
	}
	same := func(u string) (string, error) { return u, nil }
	info, err := Build(n, same, "uefi")
	if err != nil {
		t.Fatal(err)
	}
	// The keys and values of Ironic's partition-image transcript, with the
	// sizes given here.
	want := map[string]any{"id": "part.raw", "image_type": "partition", "root_gb": 1.0, "root_mb": 1024.0,
		"swap_mb": 512.0, "ephemeral_mb": 2048.0, "ephemeral_format": "ext4", "kernel": nil, "ramdisk": nil,
		"configdrive": nil, "preserve_ephemeral": false, "deploy_boot_mode": "uefi", "boot_option": "local",
		"disk_label": "gpt", "node_uuid": n.UUID, "os_hash_algo": "sha256", "stream_raw_images": true}
	b, _ := json.Marshal(info)
	var got map[string]any
	json.Unmarshal(b, &got)
	for k, v := range want {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("image_info[%q] = %v (present %v), want %v", k, gv, ok, v)
		}
	}
	// BIOS takes the disk_label capability.
	info, _ = Build(n, same, "bios")
	if info.DiskLabel != "msdos" || info.DeployBootMode != "bios" {
		t.Errorf("bios: disk_label %q boot mode %q", info.DiskLabel, info.DeployBootMode)
	}
	// A whole-disk image carries no layout keys at all.
	n.InstanceInfo["image_type"] = "whole-disk"
	info, _ = Build(n, same, "uefi")
	b, _ = json.Marshal(info)
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"image_type", "root_mb", "kernel", "disk_label", "deploy_boot_mode"} {
		if _, ok := m[k]; ok {
			t.Errorf("whole-disk image_info has %q", k)
		}
	}
}

func TestCapabilities(t *testing.T) {
	c := Capabilities(map[string]any{"capabilities": "boot_mode:uefi, secure_boot:true"})
	if c["boot_mode"] != "uefi" || c["secure_boot"] != "true" {
		t.Errorf("string capabilities = %v", c)
	}
	c = Capabilities(map[string]any{"capabilities": map[string]any{"boot_mode": "bios"}})
	if c["boot_mode"] != "bios" {
		t.Errorf("object capabilities = %v", c)
	}
}

// instance_info.rivet_target_disks reaches the agent for whole-disk images
// only, with its one known value.
func TestBuildTargetDisks(t *testing.T) {
	same := func(u string) (string, error) { return u, nil }
	node := func(extra map[string]any) *store.Node {
		ii := map[string]any{"image_source": "http://127.0.0.1:6385/images/disk.raw",
			"image_os_hash_algo": "sha256", "image_os_hash_value": "abc"}
		for k, v := range extra {
			ii[k] = v
		}
		return &store.Node{UUID: "u1", InstanceInfo: ii}
	}
	info, err := Build(node(map[string]any{"rivet_target_disks": "all_matching"}), same, "uefi")
	if err != nil || info.TargetDisks != wire.TargetAllMatching {
		t.Fatalf("Build = %+v, %v", info, err)
	}
	b, _ := json.Marshal(info)
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["rivet_target_disks"] != "all_matching" {
		t.Fatalf("image_info on the wire = %v", m)
	}
	for _, extra := range []map[string]any{
		{"rivet_target_disks": "every"},
		{"rivet_target_disks": true},
		{"rivet_target_disks": "all_matching", "image_type": "partition", "root_gb": 1},
	} {
		if _, err := Build(node(extra), same, "uefi"); err == nil {
			t.Errorf("Build accepted %v", extra)
		}
		if err := Validate(node(extra), false); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Validate(%v) = %v, want an invalid argument", extra, err)
		}
	}
}

// TestBuildAsIronic builds image_info from the instance_info Ironic held in
// its recorded deploys (wire/testdata) and compares it with the
// image_info Ironic sent the agent: the same JSON, key for key.
func TestBuildAsIronic(t *testing.T) {
	for _, scenario := range []string{"direct-deploy", "partition-image"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "wire", "testdata", scenario+"-deploy.execute_deploy_step.json"))
		if err != nil {
			t.Fatal(err)
		}
		var req struct {
			Params struct {
				Step struct {
					Args struct {
						ImageInfo json.RawMessage `json:"image_info"`
					} `json:"args"`
				} `json:"step"`
				Node struct {
					UUID         string         `json:"uuid"`
					InstanceInfo map[string]any `json:"instance_info"`
					Properties   map[string]any `json:"properties"`
					DriverInfo   map[string]any `json:"driver_info"`
				} `json:"node"`
			} `json:"params"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatal(err)
		}
		nd := req.Params.Node
		n := &store.Node{UUID: nd.UUID, InstanceInfo: nd.InstanceInfo, Properties: nd.Properties, DriverInfo: nd.DriverInfo}
		info, err := Build(n, func(u string) (string, error) { return u, nil }, "uefi")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(info)
		var g, w any
		json.Unmarshal(got, &g)
		json.Unmarshal(req.Params.Step.Args.ImageInfo, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: image_info\n got %s\nwant %s", scenario, got, req.Params.Step.Args.ImageInfo)
		}
	}
}
