// Package configiso builds Ironic's config drive, the config-2 ISO: a JSON
// description ({meta_data, user_data, network_data, vendor_data}) becomes
// an ISO 9660 image labelled config-2 holding the OpenStack metadata tree,
// gzipped and base64-encoded, as Ironic builds it for a deploy request
// (contract §6.4). Normalize takes a request's config drive as a whole: a
// string passes through once checked (an http(s) URL the agent downloads,
// or an image already encoded), a description is built.
package configiso

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/rivetmetal/rivet/imagewriter/configdrive"
)

// Label is the volume label cloud-init looks for.
const Label = "config-2"

// MaxSize is the largest decoded config drive the agent accepts (64 MiB):
// one limit end to end.
const MaxSize = configdrive.MaxSize

// Versions are the metadata versions written, as openstacksdk writes them.
var Versions = []string{"2012-08-10", "latest"}

// ErrInvalid wraps every rejection of a config drive value.
var ErrInvalid = errors.New("invalid config drive")

// Node names the node a config drive is built for; its UUID and name
// become meta_data "uuid" and "name" unless the request sets them.
type Node struct {
	UUID string
	Name string
}

// Normalize returns the config drive to store in instance_info: a string
// is checked (CheckString: an http(s) URL, or an image the agent can
// decode, of at most MaxSize) and returned as is; a JSON object is built
// with Build (whose JSON text the API has checked with CheckJSON). dir is a scratch directory ("" = the system
// temporary directory).
func Normalize(v any, node Node, dir string) (string, error) {
	switch cd := v.(type) {
	case string:
		if err := CheckString(cd); err != nil {
			return "", err
		}
		return cd, nil
	case map[string]any:
		return Build(cd, node, dir)
	default:
		return "", fmt.Errorf("%w: expected a string or an object, got %T", ErrInvalid, v)
	}
}

// Build writes the config drive described by cd (keys meta_data,
// user_data, network_data, vendor_data, all optional) as an ISO 9660 image
// labelled config-2 holding openstack/<version>/meta_data.json, user_data,
// network_data.json and vendor_data2.json for each of Versions, and
// returns it gzipped and base64-encoded. A user_data object or list is
// written as JSON, a string as is.
func Build(cd map[string]any, node Node, dir string) (string, error) {
	for k := range cd {
		switch k {
		case "meta_data", "user_data", "network_data", "vendor_data":
		default:
			return "", fmt.Errorf("%w: unknown key %q (allowed: meta_data, user_data, network_data, vendor_data)", ErrInvalid, k)
		}
	}
	meta := map[string]any{}
	if m, ok := cd["meta_data"]; ok && m != nil {
		mm, ok := m.(map[string]any)
		if !ok {
			return "", fmt.Errorf("%w: meta_data must be an object", ErrInvalid)
		}
		for k, v := range mm {
			meta[k] = v
		}
	}
	if _, ok := meta["uuid"]; !ok {
		meta["uuid"] = node.UUID
	}
	if _, ok := meta["name"]; !ok && node.Name != "" {
		meta["name"] = node.Name
	}
	files := map[string][]byte{}
	b, err := json.Marshal(meta)
	if err != nil {
		return "", fmt.Errorf("%w: meta_data: %w", ErrInvalid, err)
	}
	files["meta_data.json"] = b
	for key, name := range map[string]string{"network_data": "network_data.json", "vendor_data": "vendor_data2.json"} {
		v, ok := cd[key]
		if !ok || v == nil {
			continue
		}
		if _, isObj := v.(map[string]any); !isObj {
			return "", fmt.Errorf("%w: %s must be an object", ErrInvalid, key)
		}
		if b, err = json.Marshal(v); err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrInvalid, key, err)
		}
		files[name] = b
	}
	switch ud := cd["user_data"].(type) {
	case nil:
	case string:
		if ud != "" {
			files["user_data"] = []byte(ud)
		}
	case map[string]any, []any:
		if b, err = json.Marshal(ud); err != nil {
			return "", fmt.Errorf("%w: user_data: %w", ErrInvalid, err)
		}
		files["user_data"] = b
	default:
		return "", fmt.Errorf("%w: user_data must be a string, an object or a list", ErrInvalid)
	}
	if err := checkFiles(files); err != nil {
		return "", err
	}
	iso, err := buildISO(files, dir)
	if err != nil {
		return "", err
	}
	if len(iso) > MaxSize {
		return "", fmt.Errorf("%w: the image is %d bytes, more than %d MiB", ErrInvalid, len(iso), MaxSize>>20)
	}
	return Encode(iso)
}

// buildISO writes files into openstack/<version>/ of a fresh ISO 9660
// image (with Rock Ridge, so long names survive; go-diskfs v1.9.4 writes a broken Joliet tree, so none) and returns it.
func buildISO(files map[string][]byte, dir string) ([]byte, error) {
	tmp, err := os.MkdirTemp(dir, "rivet-configdrive-")
	if err != nil {
		return nil, fmt.Errorf("config drive: scratch directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	workspace := filepath.Join(tmp, "tree")
	if err := os.Mkdir(workspace, 0o700); err != nil {
		return nil, fmt.Errorf("config drive: workspace: %w", err)
	}
	imgPath := filepath.Join(tmp, "configdrive.iso")
	f, err := os.OpenFile(imgPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("config drive: create %s: %w", imgPath, err)
	}
	defer f.Close()
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, 2048, workspace)
	if err != nil {
		return nil, fmt.Errorf("config drive: create ISO 9660 file system: %w", err)
	}
	for _, v := range Versions {
		d := path.Join("/openstack", v)
		if err := fsys.Mkdir(d); err != nil {
			return nil, fmt.Errorf("config drive: mkdir %s: %w", d, err)
		}
		for name, data := range files {
			p := path.Join(d, name)
			w, err := fsys.OpenFile(p, os.O_CREATE|os.O_RDWR)
			if err != nil {
				return nil, fmt.Errorf("config drive: create %s: %w", p, err)
			}
			_, err = w.Write(data)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("config drive: write %s: %w", p, err)
			}
		}
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: Label}); err != nil {
		return nil, fmt.Errorf("config drive: finalize ISO 9660 image: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("config drive: rewind %s: %w", imgPath, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("config drive: read %s: %w", imgPath, err)
	}
	return data, nil
}

// Encode gzips and base64-encodes an image, the form the agent decodes.
func Encode(image []byte) (string, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(image); err != nil {
		return "", fmt.Errorf("config drive: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("config drive: gzip: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// Decode reverses Encode: base64, then gunzip, within MaxSize.
func Decode(s string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: base64: %w", ErrInvalid, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %w", ErrInvalid, err)
	}
	defer zr.Close()
	data, err := io.ReadAll(io.LimitReader(zr, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gunzip: %w", ErrInvalid, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrInvalid, MaxSize>>20)
	}
	return data, nil
}
