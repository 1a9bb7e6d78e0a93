package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Image types of ImageInfo.ImageType.
const (
	ImageTypeWholeDisk = "whole-disk"
	ImageTypePartition = "partition"
)

// ImageInfo describes the image to write (contract §2.1), as Ironic builds
// it for the write_image step and standby.prepare_image. The fields are in
// the order Ironic writes them. It marshals as Ironic does: a whole-disk
// image carries only the keys that are set (disk_format and
// container_format always, null when unknown), a partition image also
// every layout key, null or zero when unset (MarshalJSON).
type ImageInfo struct {
	ID              string   `json:"id"`
	URLs            []string `json:"urls"`
	DiskFormat      *string  `json:"disk_format"`
	ContainerFormat *string  `json:"container_format"`
	StreamRawImages *bool    `json:"stream_raw_images,omitempty"`
	// Checksum is a legacy hash (algorithm chosen by length) or the URL of
	// a checksum file.
	Checksum   string `json:"checksum,omitempty"`
	OSHashAlgo string `json:"os_hash_algo,omitempty"`
	OSHashVal  string `json:"os_hash_value,omitempty"`

	ImageServerAuthStrategy   string            `json:"image_server_auth_strategy,omitempty"`
	ImageServerUser           string            `json:"image_server_user,omitempty"`
	ImageServerPassword       string            `json:"image_server_password,omitempty"`
	ImageRequestAuthorization string            `json:"image_request_authorization,omitempty"`
	Proxies                   map[string]string `json:"proxies,omitempty"`
	NoProxy                   string            `json:"no_proxy,omitempty"`
	NodeUUID                  string            `json:"node_uuid,omitempty"`

	// The layout of a partition image (contract §6.3); Ironic sends these
	// keys for partition images only.
	Kernel            *string `json:"kernel,omitempty"`
	Ramdisk           *string `json:"ramdisk,omitempty"`
	RootGB            FlexInt `json:"root_gb,omitempty"`
	RootMB            FlexInt `json:"root_mb,omitempty"`
	SwapMB            FlexInt `json:"swap_mb,omitempty"`
	EphemeralMB       FlexInt `json:"ephemeral_mb,omitempty"`
	EphemeralFormat   *string `json:"ephemeral_format,omitempty"`
	Configdrive       *string `json:"configdrive,omitempty"`
	PreserveEphemeral bool    `json:"preserve_ephemeral,omitempty"`
	ImageType         string  `json:"image_type,omitempty"`
	DeployBootMode    string  `json:"deploy_boot_mode,omitempty"`
	BootOption        string  `json:"boot_option,omitempty"`
	DiskLabel         string  `json:"disk_label,omitempty"`

	// TargetDisks is Rivet's extension (instance_info.rivet_target_disks):
	// TargetAllMatching writes a whole-disk image to every disk the root
	// device hints match, at once; empty writes the one disk IPA would.
	TargetDisks string `json:"rivet_target_disks,omitempty"`
}

// MarshalJSON encodes image_info as Ironic does: for a partition image the
// layout keys (kernel, ramdisk, root_gb, root_mb, swap_mb, ephemeral_mb,
// ephemeral_format, configdrive, preserve_ephemeral) are always present,
// null or zero when unset.
func (i ImageInfo) MarshalJSON() ([]byte, error) {
	type plain ImageInfo // the fields without this method
	if !i.IsPartitionImage() {
		return json.Marshal(plain(i))
	}
	// The outer fields shadow the embedded ones of the same JSON name.
	return json.Marshal(struct {
		plain
		Kernel            *string `json:"kernel"`
		Ramdisk           *string `json:"ramdisk"`
		RootGB            FlexInt `json:"root_gb"`
		RootMB            FlexInt `json:"root_mb"`
		SwapMB            FlexInt `json:"swap_mb"`
		EphemeralMB       FlexInt `json:"ephemeral_mb"`
		EphemeralFormat   *string `json:"ephemeral_format"`
		Configdrive       *string `json:"configdrive"`
		PreserveEphemeral bool    `json:"preserve_ephemeral"`
	}{plain(i), i.Kernel, i.Ramdisk, i.RootGB, i.RootMB, i.SwapMB, i.EphemeralMB, i.EphemeralFormat, i.Configdrive, i.PreserveEphemeral})
}

// TargetAllMatching is the TargetDisks value that writes the image to every
// disk matching the root device hints.
const TargetAllMatching = "all_matching"

// IsPartitionImage reports whether the image is a partition image; the
// decision rests only on image_type, as in IPA.
func (i *ImageInfo) IsPartitionImage() bool { return i.ImageType == ImageTypePartition }

// DiskFormatString returns disk_format or "" when null.
func (i *ImageInfo) DiskFormatString() string {
	if i.DiskFormat == nil {
		return ""
	}
	return *i.DiskFormat
}

// ErrInvalidImageInfo wraps every rule ImageInfo.Validate finds broken.
var ErrInvalidImageInfo = errors.New("invalid image_info")

// invalidImageInfo is a broken rule of image_info; it is
// ErrInvalidImageInfo to errors.Is.
type invalidImageInfo string

func (e invalidImageInfo) Error() string        { return string(e) }
func (e invalidImageInfo) Is(target error) bool { return target == ErrInvalidImageInfo }

// Validate checks the rules of image_info that hold on both ends, the way
// IPA's _validate_image_info does: an id and at least one http(s) or file
// URL, a checksum (os_hash_algo with os_hash_value, or checksum), a known
// image_type, rivet_target_disks only for whole-disk images, and no
// negative partition size. Errors wrap ErrInvalidImageInfo. What one end
// cannot do (a disk format, a layout) is that end's own check.
func (i *ImageInfo) Validate() error {
	bad := func(format string, args ...any) error {
		return invalidImageInfo(fmt.Sprintf(format, args...))
	}
	var missing []string
	if i.ID == "" {
		missing = append(missing, "id")
	}
	if len(i.URLs) == 0 {
		missing = append(missing, "urls")
	}
	if len(missing) > 0 {
		return bad("image_info is missing %s", strings.Join(missing, ", "))
	}
	for _, u := range i.URLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "file") {
			return bad("image_info.urls: %q is not an http(s) or file URL", u)
		}
	}
	if (i.OSHashAlgo == "") != (i.OSHashVal == "") && i.Checksum == "" {
		return bad("image %s: os_hash_algo and os_hash_value must be set together", i.ID)
	}
	if (i.OSHashAlgo == "" || i.OSHashVal == "") && i.Checksum == "" {
		return bad("image_info has no checksum: set os_hash_algo and os_hash_value, or checksum")
	}
	switch i.ImageType {
	case "", ImageTypeWholeDisk, ImageTypePartition:
	default:
		return bad("image %s: image_type %q is neither %q nor %q", i.ID, i.ImageType, ImageTypeWholeDisk, ImageTypePartition)
	}
	switch i.TargetDisks {
	case "", TargetAllMatching:
	default:
		return bad("image %s: rivet_target_disks %q is not %q", i.ID, i.TargetDisks, TargetAllMatching)
	}
	if i.TargetDisks != "" && i.IsPartitionImage() {
		return bad("image %s: rivet_target_disks: only whole-disk images go to several disks", i.ID)
	}
	if i.IsPartitionImage() && (i.RootMB < 0 || i.SwapMB < 0 || i.EphemeralMB < 0) {
		return bad("image %s: negative partition size (root_mb %d, swap_mb %d, ephemeral_mb %d)", i.ID, i.RootMB, i.SwapMB, i.EphemeralMB)
	}
	return nil
}

// Redacted returns a copy safe to log: passwords and authorization headers
// are masked, and a configdrive is shortened to its length.
func (i ImageInfo) Redacted() ImageInfo {
	if i.ImageServerPassword != "" {
		i.ImageServerPassword = Masked
	}
	if i.ImageRequestAuthorization != "" {
		i.ImageRequestAuthorization = Masked
	}
	if i.Configdrive != nil {
		s := fmt.Sprintf("<%d bytes>", len(*i.Configdrive))
		i.Configdrive = &s
	}
	return i
}

// Masked is the value Ironic puts in place of a secret.
const Masked = "******"

// FlexInt is an integer that also accepts a JSON string holding an integer
// or null (Ironic passes some sizes through from user input unchanged).
type FlexInt int64

// UnmarshalJSON implements json.Unmarshaler.
func (f *FlexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*f = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*f = 0
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", s)
		}
		*f = FlexInt(n)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	v, err := n.Int64()
	if err != nil {
		fl, ferr := n.Float64()
		if ferr != nil || fl != float64(int64(fl)) {
			return fmt.Errorf("not an integer: %s", n)
		}
		v = int64(fl)
	}
	*f = FlexInt(v)
	return nil
}
