package imageinfo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
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
		{"partition", map[string]any{"image_source": "http://h/p.img", "image_checksum": sum, "image_type": "partition"}, "Partition images"},
		{"dict configdrive", map[string]any{"image_source": "http://h/disk.raw", "image_checksum": sum, "configdrive": map[string]any{"user_data": "x"}}, "config drive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(&store.Node{InstanceInfo: tc.ii})
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
	info, err := Build(n, nodeView)
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
