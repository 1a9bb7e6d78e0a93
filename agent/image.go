package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/agent/wire"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/imagewriter"
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

// validateImageInfo checks image_info before any work starts, the way IPA's
// _validate_image_info does, plus what this agent cannot do yet.
func validateImageInfo(info *wire.ImageInfo, configdrive *string) error {
	var missing []string
	if info.ID == "" {
		missing = append(missing, "id")
	}
	if len(info.URLs) == 0 {
		missing = append(missing, "urls")
	}
	if len(missing) > 0 {
		return ErrInvalidParams("image_info is missing %s", strings.Join(missing, ", "))
	}
	for _, u := range info.URLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "file") {
			return ErrInvalidParams("image_info.urls: %q is not an http(s) or file URL", u)
		}
	}
	if (info.OSHashAlgo == "" || info.OSHashVal == "") && info.Checksum == "" {
		return ErrInvalidParams("image_info has no checksum: set os_hash_algo and os_hash_value, or checksum")
	}
	if info.IsPartitionImage() {
		return ErrInvalidParams("image %s: partition images are not supported by this agent yet; use a whole-disk image", info.ID)
	}
	if f := info.DiskFormatString(); f != "" && f != "raw" {
		return ErrInvalidParams("image %s: disk_format %q is not supported by this agent yet (raw only)", info.ID, f)
	}
	cd := configdrive
	if cd == nil {
		cd = info.Configdrive
	}
	if cd != nil && *cd != "" {
		return ErrInvalidParams("image %s: config drives are not supported by this agent yet", info.ID)
	}
	return nil
}

// writeImage chooses the disk and streams the image onto it. Its result
// carries IPA's text "prepare_image: image (<id>) written to device <dev>
// root_uuid=<id>" and the final progress.
func (a *Agent) writeImage(ctx context.Context, job *Job, info wire.ImageInfo) (*wire.ImageResult, error) {
	dev, err := a.chooseDisk()
	if err != nil {
		return nil, err
	}
	sum, err := imagewriter.ResolveChecksum(info.OSHashAlgo, info.OSHashVal, info.Checksum, imagewriter.ChecksumOptions{
		DisallowMD5: a.nodes.lookupConfig().AgentMD5ChecksumEnable != nil && !*a.nodes.lookupConfig().AgentMD5ChecksumEnable,
	})
	if err != nil {
		return nil, newError("ImageChecksumError", 500, "Error verifying image checksum", err, "image %s: %v", info.ID, err)
	}
	src, err := a.imageSource(info)
	if err != nil {
		return nil, err
	}
	a.log.Info("writing image", "image", info.ID, "device", dev.Path, "checksum", sum.Algo)
	res, err := imagewriter.Write(ctx, imagewriter.Request{
		Source:         src,
		Checksum:       sum,
		Targets:        []string{dev.Path},
		ReadGapTimeout: a.cfg.DownloadConnectTimeout,
		Progress:       func(p imagewriter.Progress) { job.SetProgress(toWireProgress(p)) },
		Logger:         a.log,
	})
	if err != nil {
		return nil, imageError(info.ID, dev.Path, err)
	}
	final := toWireProgress(imagewriter.Progress{Phase: imagewriter.PhaseDone, BytesRead: res.Size, BytesWritten: res.Size,
		TotalBytes: res.Size, StartedAt: time.Now().Add(-res.Duration), UpdatedAt: time.Now(), Timings: res.Timings})
	job.SetProgress(final)
	diskID, err := hardware.DiskIdentifier(dev.Path)
	if err != nil {
		return nil, newError("ImageWriteError", 500, "Error writing image to device", err, "%v", err)
	}
	a.images.set(wire.PartitionUUIDs{RootUUID: diskID})
	a.log.Info("image deployed", "image", info.ID, "device", dev.Path, "bytes", res.Size,
		"seconds", res.Duration.Seconds(), "root_uuid", diskID, "agent_peak_rss_mib", peakRSS()>>20)
	return &wire.ImageResult{
		Result:   fmt.Sprintf("prepare_image: image (%s) written to device %s root_uuid=%s", info.ID, dev.Path, diskID),
		Progress: &final,
	}, nil
}

// imageError maps an imagewriter failure to IPA's error class.
func imageError(id, dev string, err error) error {
	switch {
	case errors.Is(err, imagewriter.ErrChecksum):
		return newError("ImageChecksumError", 500, "Error verifying image checksum", err, "image %s: %v", id, err)
	case errors.Is(err, imagewriter.ErrDownload), errors.Is(err, imagewriter.ErrTruncated):
		return newError("ImageDownloadError", 500, "Error downloading image", err, "image %s: %v", id, err)
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
	src.Client = imagewriter.NewHTTPClient(a.cfg.DownloadConnectTimeout, proxy)
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

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// chooseDisk picks the install disk from the cached node's root device
// hints among the candidate disks, and refuses one that is in use.
func (a *Agent) chooseDisk() (hardware.BlockDevice, error) {
	raw, err := a.nodes.rootDeviceHints()
	if err != nil {
		return hardware.BlockDevice{}, err
	}
	hints, err := hardware.ParseHints(raw)
	if err != nil {
		return hardware.BlockDevice{}, newError("DeviceNotFound", 404, "Error finding the disk or partition device to deploy the image onto", err, "%v", err)
	}
	devs, err := a.lister().List()
	if err != nil {
		return hardware.BlockDevice{}, newError("DeviceNotFound", 404, "Error finding the disk or partition device to deploy the image onto", err, "%v", err)
	}
	dev, err := hardware.SelectRootDevice(devs, hints)
	if err != nil {
		return dev, newError("DeviceNotFound", 404, "Error finding the disk or partition device to deploy the image onto", err, "%v", err)
	}
	if err := hardware.InUse(a.cfg.SysRoot, dev); err != nil {
		return dev, newError("DeviceNotFound", 404, "Error finding the disk or partition device to deploy the image onto", err,
			"refusing %s chosen by the root device hints %s: %v", dev.Path, hints, err)
	}
	a.log.Info("install disk chosen", "device", dev.String(), "hints", hints.String())
	return dev, nil
}

func (a *Agent) lister() hardware.Lister {
	return hardware.Lister{Root: a.cfg.SysRoot, Allow: a.cfg.BlockDevices}
}
