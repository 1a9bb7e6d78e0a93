// Package imageinfo checks a node's instance_info for deployment and
// builds the image_info of the agent's write_image step from it, as Ironic
// does for an http image_source (contract §2.1).
package imageinfo

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/rivetmetal/rivet/agent/wire"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Validate checks that instance_info describes an image the
// skeleton can deploy: an http(s) image_source, a checksum (image_checksum,
// or image_os_hash_algo with image_os_hash_value), and a whole-disk image.
func Validate(n *store.Node) error {
	ii := n.InstanceInfo
	src, _ := ii["image_source"].(string)
	if src == "" {
		return errdefs.InvalidArgument("Some parameters were missing in node's instance_info. Missing are: ['image_source']")
	}
	if !IsHTTPURL(src) {
		return errdefs.InvalidArgument("Image source %q is not an http(s) URL; only HTTP image sources are supported.", src)
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
	if t, _ := ii["image_type"].(string); t == wire.ImageTypePartition || ii["kernel"] != nil || ii["ramdisk"] != nil {
		return errdefs.InvalidArgument("Partition images are not supported yet (they need image.install_bootloader); use a whole-disk image.")
	}
	if cd, ok := ii["configdrive"]; ok && cd != nil {
		if _, isString := cd.(string); !isString {
			return errdefs.InvalidArgument("Building a config drive from a dictionary is not supported yet; pass a gzipped, base64-encoded ISO image or an URL.")
		}
	}
	return nil
}

// Build builds the write_image image_info the way Ironic does for
// an http image_source (contract §2.1). nodeURL maps conductor-reachable
// URLs (image and checksum file) to the node's view.
func Build(n *store.Node, nodeURL func(string) (string, error)) (wire.ImageInfo, error) {
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
	return info, nil
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
