// Package imageinfo checks a node's instance_info for deployment and
// builds the image_info of the agent's write_image step from it, as Ironic
// does for an http image_source (contract §2.1): whole-disk images, and
// partition images with their layout (root_gb, swap_mb, ephemeral_gb, ...).
package imageinfo

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Validate checks that instance_info describes an image Rivet can deploy,
// with Ironic's messages for what is wrong in instance_info: an http(s)
// image_source, a checksum (image_checksum, or image_os_hash_algo with
// image_os_hash_value), for a partition image a positive root_gb and
// integer sizes, and a config drive that is a string (a JSON one has been
// built into an ISO by then). The image_info built from it must then pass
// wire.ImageInfo.Validate, the rules the agent checks too.
//
// canCache says whether the conductor has an image cache: a file://
// image_source, or image_download_source "http"/"local", needs one.
func Validate(n *store.Node, canCache bool) error {
	ii := n.InstanceInfo
	src, _ := ii["image_source"].(string)
	if src == "" {
		return errdefs.InvalidArgument("Some parameters were missing in node's instance_info. Missing are: ['image_source']")
	}
	switch {
	case images.NeedsCache(ii) && !canCache:
		return errdefs.InvalidArgument("Image %s must be served by the conductor (a file:// source or image_download_source %v), but this conductor has no image cache.", src, ii["image_download_source"])
	case images.NeedsCache(ii):
		if !IsHTTPURL(src) && !strings.HasPrefix(strings.ToLower(src), "file://") {
			return errdefs.InvalidArgument("Image source %q is neither an http(s) nor a file:// URL.", src)
		}
	case !IsHTTPURL(src):
		return errdefs.InvalidArgument("Image source %q is not an http(s) URL; file:// sources and image_download_source \"http\" are served from the conductor's image cache.", src)
	}
	checksum, _ := ii["image_checksum"].(string)
	algo, _ := ii["image_os_hash_algo"].(string)
	value, _ := ii["image_os_hash_value"].(string)
	if checksum == "" && (algo == "" || value == "") {
		return errdefs.InvalidArgument("Unable to verify image %s with available checksums. "+
			"Please make sure the specified 'image_source' is valid or add 'image_checksum', "+
			"or 'image_os_hash_algo' and 'image_os_hash_value', to instance_info.", src)
	}
	if (algo == "") != (value == "") {
		return errdefs.InvalidArgument("instance_info image_os_hash_algo and image_os_hash_value must be set together.")
	}
	if IsPartition(n) {
		if _, ok := ii["root_gb"]; !ok {
			return errdefs.InvalidArgument("Some parameters were missing in node's instance_info. Missing are: ['root_gb']")
		}
		if v, err := intField(ii, "root_gb"); err == nil && v <= 0 {
			return errdefs.InvalidArgument("instance_info root_gb must be a positive integer, got %d.", v)
		}
		if v, ok := ii["preserve_ephemeral"]; ok {
			if _, isBool := v.(bool); !isBool {
				return errdefs.InvalidArgument("instance_info preserve_ephemeral must be a boolean.")
			}
		}
	}
	if cd, ok := ii["configdrive"]; ok && cd != nil {
		if _, isString := cd.(string); !isString {
			return errdefs.InvalidArgument("instance_info configdrive must be a string: a gzipped, base64-encoded ISO image or a URL.")
		}
	}
	_, err := Build(n, func(u string) (string, error) { return u, nil }, "")
	return err
}

// IsPartition reports whether instance_info describes a partition image:
// image_type "partition", or (with no image_type) a kernel and a ramdisk,
// as Ironic decides for images that are not in Glance.
func IsPartition(n *store.Node) bool {
	ii := n.InstanceInfo
	if t, _ := ii["image_type"].(string); t != "" {
		return t == wire.ImageTypePartition
	}
	k, _ := ii["kernel"].(string)
	r, _ := ii["ramdisk"].(string)
	return k != "" && r != ""
}

// intField reads an integer instance_info field that may be a number or a
// numeric string (0 when absent or null).
func intField(ii map[string]any, k string) (int64, error) {
	switch v := ii[k].(type) {
	case nil:
		return 0, nil
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case float64:
		if v != math.Trunc(v) {
			return 0, fmt.Errorf("not an integer: %v", v)
		}
		return int64(v), nil
	case string:
		if strings.TrimSpace(v) == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("not an integer: %q", v)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("not an integer: %v", v)
	}
}

// Build builds the write_image image_info the way Ironic does for an
// http image_source (contract §2.1), and checks it with
// wire.ImageInfo.Validate (errdefs.InvalidArgument when it fails). nodeURL maps conductor-reachable URLs
// (image and checksum file) to the node's view; bootMode ("uefi" or
// "bios") is the node's, which a partition image's layout follows.
func Build(n *store.Node, nodeURL func(string) (string, error), bootMode string) (wire.ImageInfo, error) {
	ii := n.InstanceInfo
	src, _ := ii["image_source"].(string)
	imgURL, _ := ii["image_url"].(string)
	if imgURL == "" {
		imgURL = src
	}
	u, err := nodeURL(imgURL)
	if err != nil {
		return wire.ImageInfo{}, err
	}
	pu, err := url.Parse(src)
	if err != nil {
		return wire.ImageInfo{}, fmt.Errorf("parse image_source %q: %w", src, err)
	}
	stream := true
	info := wire.ImageInfo{
		ID:              path.Base(pu.Path),
		URLs:            []string{u},
		DiskFormat:      optString(ii["image_disk_format"]),
		ContainerFormat: optString(ii["image_container_format"]),
		StreamRawImages: &stream,
		NodeUUID:        n.UUID,
	}
	if c, _ := ii["image_checksum"].(string); c != "" {
		if IsHTTPURL(c) {
			if c, err = nodeURL(c); err != nil {
				return wire.ImageInfo{}, err
			}
		}
		info.Checksum = c
	}
	algo, _ := ii["image_os_hash_algo"].(string)
	value, _ := ii["image_os_hash_value"].(string)
	if algo != "" && value != "" {
		info.OSHashAlgo, info.OSHashVal = algo, value
	}
	proxies := map[string]string{}
	if p, _ := n.DriverInfo["image_http_proxy"].(string); p != "" {
		proxies["http"] = p
	}
	if p, _ := n.DriverInfo["image_https_proxy"].(string); p != "" {
		proxies["https"] = p
	}
	if len(proxies) > 0 {
		info.Proxies = proxies
		info.NoProxy, _ = n.DriverInfo["image_no_proxy"].(string)
	}
	switch t := ii["rivet_target_disks"].(type) {
	case nil:
	case string:
		info.TargetDisks = t
	default:
		return wire.ImageInfo{}, errdefs.InvalidArgument("instance_info rivet_target_disks: %v is not %q.", t, wire.TargetAllMatching)
	}
	if IsPartition(n) {
		if err := partitionFields(&info, n, bootMode); err != nil {
			return wire.ImageInfo{}, errdefs.InvalidArgument("%v", err)
		}
	} else if t, _ := ii["image_type"].(string); t != wire.ImageTypeWholeDisk {
		// Whole-disk images go without image_type, as Ironic sends them;
		// anything else is passed on for Validate to judge.
		info.ImageType = t
	}
	if err := info.Validate(); err != nil {
		return wire.ImageInfo{}, errdefs.InvalidArgument("instance_info of node %s: %v", n.UUID, err)
	}
	return info, nil
}

// partitionFields adds the layout of a partition image (contract §2.1 and
// §6.3): sizes in MiB, the ephemeral file system, the boot mode and the
// partition table type (GPT under UEFI, else the disk_label capability).
func partitionFields(info *wire.ImageInfo, n *store.Node, bootMode string) error {
	ii := n.InstanceInfo
	rootGB, err := intField(ii, "root_gb")
	if err != nil {
		return fmt.Errorf("instance_info root_gb: %w", err)
	}
	swapMB, err := intField(ii, "swap_mb")
	if err != nil {
		return fmt.Errorf("instance_info swap_mb: %w", err)
	}
	ephGB, err := intField(ii, "ephemeral_gb")
	if err != nil {
		return fmt.Errorf("instance_info ephemeral_gb: %w", err)
	}
	info.ImageType = wire.ImageTypePartition
	info.Kernel = optString(ii["kernel"])
	info.Ramdisk = optString(ii["ramdisk"])
	info.RootGB = wire.FlexInt(rootGB)
	info.RootMB = wire.FlexInt(1024 * rootGB)
	info.SwapMB = wire.FlexInt(swapMB)
	info.EphemeralMB = wire.FlexInt(1024 * ephGB)
	info.EphemeralFormat = optString(ii["ephemeral_format"])
	if info.EphemeralFormat == nil && ephGB > 0 {
		ext4 := "ext4"
		info.EphemeralFormat = &ext4
	}
	info.PreserveEphemeral, _ = ii["preserve_ephemeral"].(bool)
	info.DeployBootMode = bootMode
	info.BootOption = "local"
	switch label := Capabilities(n.Properties)["disk_label"]; {
	case bootMode == "uefi":
		info.DiskLabel = "gpt"
	case label == "gpt" || label == "msdos":
		info.DiskLabel = label
	}
	return nil
}

// Capabilities parses properties.capabilities: "k1:v1,k2:v2" or an object.
func Capabilities(props map[string]any) map[string]string {
	out := map[string]string{}
	switch c := props["capabilities"].(type) {
	case string:
		for _, kv := range strings.Split(c, ",") {
			if k, v, ok := strings.Cut(strings.TrimSpace(kv), ":"); ok {
				out[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	case map[string]any:
		for k, v := range c {
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}

// IsHTTPURL reports whether s is an absolute http(s) URL.
func IsHTTPURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme == "http" || scheme == "https"
}

func optString(v any) *string {
	if s, ok := v.(string); ok && s != "" {
		return &s
	}
	return nil
}
