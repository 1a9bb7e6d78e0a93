package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Image types of ImageInfo.ImageType.
const (
	ImageTypeWholeDisk = "whole-disk"
	ImageTypePartition = "partition"
)

// ImageInfo describes the image to write (contract §2.1), as Ironic builds
// it for the write_image step and standby.prepare_image.
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
	// TargetDisks is Rivet's extension (instance_info.rivet_target_disks):
	// TargetAllMatching writes a whole-disk image to every disk the root
	// device hints match, at once; empty writes the one disk IPA would.
	TargetDisks string `json:"rivet_target_disks,omitempty"`

	// Partition images only.
	ImageType         string  `json:"image_type,omitempty"`
	Kernel            *string `json:"kernel,omitempty"`
	Ramdisk           *string `json:"ramdisk,omitempty"`
	RootGB            FlexInt `json:"root_gb,omitempty"`
	RootMB            FlexInt `json:"root_mb,omitempty"`
	SwapMB            FlexInt `json:"swap_mb,omitempty"`
	EphemeralMB       FlexInt `json:"ephemeral_mb,omitempty"`
	EphemeralFormat   *string `json:"ephemeral_format,omitempty"`
	PreserveEphemeral bool    `json:"preserve_ephemeral,omitempty"`
	DeployBootMode    string  `json:"deploy_boot_mode,omitempty"`
	BootOption        string  `json:"boot_option,omitempty"`
	DiskLabel         string  `json:"disk_label,omitempty"`
	Configdrive       *string `json:"configdrive,omitempty"`
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
