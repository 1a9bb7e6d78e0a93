package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/imagewriter"
	"github.com/rivetmetal/rivet/imagewriter/configdrive"
	"github.com/rivetmetal/rivet/imagewriter/layout"
	"github.com/rivetmetal/rivet/wire"
)

// imageState remembers what the last image write produced, for
// get_partition_uuids.
type imageState struct {
	mu    sync.Mutex
	uuids wire.PartitionUUIDs
}

func (s *imageState) set(u wire.PartitionUUIDs) {
	s.mu.Lock()
	s.uuids = u
	s.mu.Unlock()
}

func (s *imageState) get() wire.PartitionUUIDs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uuids
}

// validateImageInfo checks image_info before any work starts: the rules
// both ends share (wire.ImageInfo.Validate, IPA's _validate_image_info),
// then what this agent cannot do; MD5 checksums pass only when allowMD5.
func validateImageInfo(info *wire.ImageInfo, cdParam *string, allowMD5 bool) error {
	if err := info.Validate(); err != nil {
		return ErrInvalidParams("%v", err)
	}
	if err := checkMD5(info, allowMD5); err != nil {
		return err
	}
	switch f := strings.ToLower(info.DiskFormatString()); f {
	case "", "raw", "qcow2", "gpt":
	default:
		return ErrInvalidParams("image %s: disk_format %q is not supported (raw, gpt, qcow2; raw may be gzip-, zstd- or xz-compressed)", info.ID, f)
	}
	if info.IsPartitionImage() {
		if info.PreserveEphemeral {
			return ErrInvalidParams("image %s: preserve_ephemeral is not supported by this agent", info.ID)
		}
		if f := info.EphemeralFormat; info.EphemeralMB > 0 && f != nil && *f != "" && !strings.EqualFold(*f, "ext4") {
			return ErrInvalidParams("image %s: ephemeral_format %q is not supported (ext4)", info.ID, *f)
		}
		if _, err := layout.TableFor(info.DeployBootMode, info.DiskLabel); err != nil {
			return ErrInvalidParams("image %s: %v", info.ID, err)
		}
	}
	cd := cdParam
	if cd == nil {
		cd = info.Configdrive
	}
	if cd != nil && *cd != "" && !configdrive.IsURL(*cd) {
		if _, err := configdrive.Decode([]byte(*cd)); err != nil {
			return ErrInvalidParams("image %s: configdrive: %v", info.ID, err)
		}
	}
	return nil
}

// withConfigdrive folds the configdrive parameter of prepare_image or
// write_image into image_info; the parameter wins over image_info's copy,
// as in IPA.
func withConfigdrive(info wire.ImageInfo, cdParam *string) wire.ImageInfo {
	if cdParam != nil && *cdParam != "" {
		info.Configdrive = cdParam
	}
	return info
}

// writeImage chooses the disk and streams the image onto it: a whole-disk
// image as it is, a partition image into the layout of contract §6.3, then
// the config drive. Its result carries IPA's text "prepare_image: image
// (<id>) written to device <dev> root_uuid=<uuid>[ efi_system_partition_uuid=<uuid>]"
// and the final progress with per-phase timings; get_partition_uuids then
// reports the disk's identifiers.
func (a *Agent) writeImage(ctx context.Context, job jobProgress, info wire.ImageInfo) (*wire.ImageResult, error) {
	disks, err := a.chooseDisks(info.TargetDisks == wire.TargetAllMatching)
	if err != nil {
		return nil, err
	}
	dev := disks[0]
	targets := make([]string, len(disks))
	for i, d := range disks {
		targets[i] = d.Path
	}
	src, err := a.imageSource(info)
	if err != nil {
		return nil, err
	}
	sum, err := a.imageChecksum(ctx, src, info)
	if err != nil {
		return nil, newError("ImageChecksumError", 500, "Error verifying image checksum", err, "image %s: %v", info.ID, err)
	}
	req := imagewriter.Request{
		Source:     src,
		Checksum:   sum,
		Targets:    targets,
		DiskFormat: info.DiskFormatString(),
		Progress:   func(p imagewriter.Progress) { job.SetProgress(toWireProgress(p)) },
		Logger:     a.log,
		// The decoders' memory, whatever the image says about itself.
		MaxDecoderMemory: a.cfg.MaxDecoderMemory,
	}
	if info.Configdrive != nil && *info.Configdrive != "" {
		if req.Configdrive, err = a.fetchConfigdrive(ctx, src, *info.Configdrive); err != nil {
			return nil, newError("InstanceDeployFailure", 500, "Failed to deploy instance", err, "image %s: config drive: %v", info.ID, err)
		}
	}
	if info.IsPartitionImage() {
		req.Partition = &imagewriter.PartitionImage{
			BootMode: a.bootMode(info), DiskLabel: info.DiskLabel,
			RootMB: int64(info.RootMB), SwapMB: int64(info.SwapMB), EphemeralMB: int64(info.EphemeralMB),
		}
		if req.Partition.RootMB == 0 && info.RootGB > 0 {
			req.Partition.RootMB = int64(info.RootGB) * 1024
		}
		if info.EphemeralFormat != nil {
			req.Partition.EphemeralFormat = *info.EphemeralFormat
		}
	}
	a.log.Info("writing image", "image", info.ID, "devices", targets, "checksum", sum.Algo, "disk_format", info.DiskFormatString(),
		"image_type", info.ImageType, "configdrive_bytes", len(req.Configdrive))
	res, err := imagewriter.Write(ctx, req)
	if err != nil {
		return nil, imageError(info.ID, dev.Path, err)
	}
	d := res.Disks[0]
	final := toWireProgress(imagewriter.Progress{Phase: imagewriter.PhaseDone, BytesRead: res.Size, BytesDecoded: res.ImageSize,
		BytesWritten: d.Written, BytesSkipped: d.Skipped, TotalBytes: res.Size, ImageSize: res.ImageSize,
		StartedAt: time.Now().Add(-res.Duration), UpdatedAt: time.Now(), Timings: res.Timings})
	addDecodeTimings(&final, res.Decode)
	job.SetProgress(final)
	uuids := partitionUUIDs(info, d)
	a.images.set(uuids)
	text := fmt.Sprintf("prepare_image: image (%s) written to device %s root_uuid=%s", info.ID, dev.Path, uuids.RootUUID)
	if uuids.EFISystemPartUUID != "" {
		text += " efi_system_partition_uuid=" + uuids.EFISystemPartUUID
	}
	a.log.Info("image deployed", "image", info.ID, "devices", targets, "format", res.Format, "bytes", res.Size,
		"image_bytes", res.ImageSize, "skipped", d.Skipped, "resumes", res.Resumes, "seconds", res.Duration.Seconds(),
		"root_uuid", uuids.RootUUID, "agent_peak_rss_mib", peakRSS()>>20)
	out := &wire.ImageResult{Result: text, Progress: &final}
	if len(targets) > 1 {
		out.Devices = targets
	}
	return out, nil
}

// partitionUUIDs is get_partition_uuids' answer (contract §2.2): for a
// partition image the root filesystem's UUID, for a whole-disk image the
// disk identifier; the ESP's UUID when there is one; the partitions by role.
func partitionUUIDs(info wire.ImageInfo, d imagewriter.DiskResult) wire.PartitionUUIDs {
	u := wire.PartitionUUIDs{RootUUID: d.DiskID, EFISystemPartUUID: d.ESPUUID}
	if info.IsPartitionImage() {
		u.RootUUID = d.RootUUID
	}
	if len(d.Partitions) > 0 {
		u.Partitions = d.Partitions
	}
	return u
}

// imageChecksum resolves the expected checksum: os_hash_algo/value, a
// legacy hash, or a checksum file URL fetched like the image.
func (a *Agent) imageChecksum(ctx context.Context, src imagewriter.Source, info wire.ImageInfo) (imagewriter.Checksum, error) {
	opts := imagewriter.ChecksumOptions{AllowMD5: a.md5Allowed()}
	if (info.OSHashAlgo == "" || info.OSHashVal == "") && imagewriter.IsChecksumURL(info.Checksum) {
		return imagewriter.FetchChecksum(ctx, src, info.Checksum, info.URLs[0], opts)
	}
	return imagewriter.ResolveChecksum(info.OSHashAlgo, info.OSHashVal, info.Checksum, opts)
}

// fetchConfigdrive decodes the configdrive parameter, downloading it first
// when it is a URL.
func (a *Agent) fetchConfigdrive(ctx context.Context, src imagewriter.Source, v string) ([]byte, error) {
	if configdrive.IsURL(v) {
		return configdrive.Fetch(ctx, src, v)
	}
	return configdrive.Decode([]byte(v))
}

// bootMode is the boot mode a partition image is laid out for:
// image_info's deploy_boot_mode, else the node's (instance_info, then
// properties capabilities), else how this ramdisk booted.
func (a *Agent) bootMode(info wire.ImageInfo) string {
	if m := strings.ToLower(info.DeployBootMode); m == "uefi" || m == "bios" {
		return m
	}
	a.nodes.mu.Lock()
	node := a.nodes.node
	a.nodes.mu.Unlock()
	for _, key := range []string{"instance_info", "properties"} {
		sub, _ := node[key].(map[string]any)
		if m, _ := sub["deploy_boot_mode"].(string); m == "uefi" || m == "bios" {
			return m
		}
		caps, _ := sub["capabilities"].(string)
		if c, ok := sub["capabilities"].(map[string]any); ok {
			if m, _ := c["boot_mode"].(string); m == "uefi" || m == "bios" {
				return m
			}
		}
		for _, kv := range strings.Split(caps, ",") {
			if k, v, ok := strings.Cut(strings.TrimSpace(kv), ":"); ok && k == "boot_mode" && (v == "uefi" || v == "bios") {
				return v
			}
		}
	}
	if _, err := os.Stat(filepath.Join(a.cfg.SysRoot, "sys/firmware/efi")); err == nil {
		return "uefi"
	}
	return "bios"
}

// imageError maps an imagewriter failure to IPA's error class.
func imageError(id, dev string, err error) error {
	switch {
	case errors.Is(err, imagewriter.ErrChecksum):
		return newError("ImageChecksumError", 500, "Error verifying image checksum", err, "image %s: %v", id, err)
	case errors.Is(err, imagewriter.ErrDownload), errors.Is(err, imagewriter.ErrTruncated):
		return newError("ImageDownloadError", 500, "Error downloading image", err, "image %s: %v", id, err)
	case errors.Is(err, imagewriter.ErrMemoryLimit):
		return newError("InvalidImage", 500, "Error validating image", err, "image %s: %v (the agent's limit is rivet-max-decoder-memory)", id, err)
	case errors.Is(err, imagewriter.ErrFormat):
		return newError("InvalidImage", 500, "Error validating image", err, "image %s: %v", id, err)
	case errors.Is(err, imagewriter.ErrConfigdrive):
		return newError("InstanceDeployFailure", 500, "Failed to deploy instance", err, "image %s: config drive on %s: %v", id, dev, err)
	default:
		return newError("ImageWriteError", 500, "Error writing image to device", err, "image %s to %s: %v", id, dev, err)
	}
}

// imageSource builds the download source from image_info: URLs, proxies,
// HTTP basic auth or a full Authorization header.
func (a *Agent) imageSource(info wire.ImageInfo) (imagewriter.Source, error) {
	src := imagewriter.Source{URLs: info.URLs, Header: http.Header{}}
	var proxy func(*http.Request) (*url.URL, error)
	if len(info.Proxies) > 0 {
		noProxy := strings.Split(info.NoProxy, ",")
		proxy = func(r *http.Request) (*url.URL, error) {
			host := r.URL.Hostname()
			for _, np := range noProxy {
				if np = strings.TrimSpace(np); np != "" && (host == np || strings.HasSuffix(host, "."+strings.TrimPrefix(np, "."))) {
					return nil, nil
				}
			}
			p, ok := info.Proxies[r.URL.Scheme]
			if !ok || p == "" {
				return nil, nil
			}
			return url.Parse(p)
		}
	}
	src.Client = imagewriter.NewHTTPClient(a.cfg.DownloadConnectTimeout, proxy, a.tlsClient)
	src.ReadGapTimeout = a.cfg.DownloadConnectTimeout
	src.Retry = imagewriter.Retry{Attempts: a.cfg.DownloadRetries, Interval: a.cfg.DownloadRetryInterval}
	if a.cfg.DownloadRetries == 0 {
		src.Retry.Attempts = -1 // no retry (the zero value would mean the default)
	}
	src.MaxDuration = a.cfg.DownloadMaxDuration
	src.Logger = a.log
	switch {
	case info.ImageRequestAuthorization != "":
		v, err := base64.StdEncoding.DecodeString(info.ImageRequestAuthorization)
		if err != nil {
			return src, ErrInvalidParams("image_request_authorization is not base64")
		}
		src.Header.Set("Authorization", string(v))
	case info.ImageServerAuthStrategy == "http_basic":
		if info.ImageServerUser == "" || info.ImageServerPassword == "" {
			return src, ErrInvalidParams("image_server_auth_strategy http_basic needs image_server_user and image_server_password")
		}
		src.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(info.ImageServerUser+":"+info.ImageServerPassword)))
	}
	return src, nil
}

func toWireProgress(p imagewriter.Progress) wire.Progress {
	w := wire.Progress{
		Phase: p.Phase, BytesRead: p.BytesRead, BytesWritten: p.BytesWritten, BytesSkipped: p.BytesSkipped,
		TotalBytes: p.TotalBytes, RateBytesPerSec: p.Rate(), ETASeconds: -1,
		StartedAt: unixSeconds(p.StartedAt), UpdatedAt: unixSeconds(p.UpdatedAt),
	}
	if eta := p.ETA(); eta >= 0 {
		w.ETASeconds = eta.Seconds()
	}
	if len(p.Timings) > 0 {
		w.Timings = map[string]float64{}
		for k, v := range p.Timings {
			w.Timings[k] = v.Seconds()
		}
	}
	return w
}

// addDecodeTimings adds how the write's decode stage spent it (nothing
// for a raw image, which has no decode stage) to p's timings.
func addDecodeTimings(p *wire.Progress, d *imagewriter.DecodeStats) {
	if d == nil {
		return
	}
	if p.Timings == nil {
		p.Timings = map[string]float64{}
	}
	p.Timings[wire.TimingDecodeInputWait] = d.InputWait.Seconds()
	p.Timings[wire.TimingDecodeOutputWait] = d.OutputWait.Seconds()
	if d.CPU > 0 {
		p.Timings[wire.TimingDecodeCPU] = d.CPU.Seconds()
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// chooseDisk picks the install disk from the cached node's root device
// hints among the candidate disks, and refuses one that is in use.
func (a *Agent) chooseDisk() (hardware.BlockDevice, error) {
	devs, err := a.chooseDisks(false)
	if err != nil {
		return hardware.BlockDevice{}, err
	}
	return devs[0], nil
}

// chooseDisks returns the install disk the root device hints pick or, with
// all, every disk they match (image_info rivet_target_disks), the install
// disk first. Each is refused if it or a partition of it is in use; with
// all, one disk in use fails the whole choice: nothing is written to a set
// the operator did not get.
func (a *Agent) chooseDisks(all bool) ([]hardware.BlockDevice, error) {
	notFound := func(err error, format string, args ...any) error {
		return newError("DeviceNotFound", 404, "Error finding the disk or partition device to deploy the image onto", err, format, args...)
	}
	raw, err := a.nodes.rootDeviceHints()
	if err != nil {
		return nil, err
	}
	hints, err := hardware.ParseHints(raw)
	if err != nil {
		return nil, notFound(err, "%v", err)
	}
	devs, err := a.lister().List()
	if err != nil {
		return nil, notFound(err, "%v", err)
	}
	var chosen []hardware.BlockDevice
	if all {
		chosen, err = hardware.SelectMatchingDevices(devs, hints)
	} else {
		var dev hardware.BlockDevice
		dev, err = hardware.SelectRootDevice(devs, hints)
		chosen = []hardware.BlockDevice{dev}
	}
	if err != nil {
		return nil, notFound(err, "%v", err)
	}
	for _, dev := range chosen {
		if err := hardware.InUse(a.cfg.SysRoot, dev); err != nil {
			return nil, notFound(err, "refusing %s chosen by the root device hints %s: %v", dev.Path, hints, err)
		}
	}
	for _, dev := range chosen {
		a.log.Info("install disk chosen", "device", dev.String(), "hints", hints.String(), "disks", len(chosen))
	}
	return chosen, nil
}

func (a *Agent) lister() hardware.Lister {
	return hardware.Lister{Root: a.cfg.SysRoot, Allow: a.cfg.BlockDevices}
}
