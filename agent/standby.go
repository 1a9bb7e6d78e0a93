package agent

import (
	"context"
	"encoding/json"

	"github.com/rivetmetal/rivet/wire"
)

// standby is IPA's standby extension: image writing and power actions.
type standby struct{ a *Agent }

func (standby) Name() string { return "standby" }

func (s standby) Commands() []Command {
	return []Command{
		{Name: "prepare_image", Mode: Async, Prepare: s.prepareImage},
		{Name: "get_partition_uuids", Mode: Sync, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
			return s.a.images.get(), nil
		})},
		{Name: "sync", Mode: Sync, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
			s.a.power.Sync()
			return nil, nil
		})},
		{Name: "power_off", Mode: Async, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
			return nil, s.a.power.PowerOff()
		})},
		{Name: "run_image", Mode: Async, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
			return nil, s.a.power.Reboot()
		})},
	}
}

type prepareImageParams struct {
	ImageInfo   *wire.ImageInfo `json:"image_info"`
	Configdrive *string         `json:"configdrive"`
}

func (s standby) prepareImage(raw json.RawMessage) (RunFunc, error) {
	var p prepareImageParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.ImageInfo == nil {
		return nil, ErrInvalidParams("image_info is required")
	}
	if err := validateImageInfo(p.ImageInfo, p.Configdrive, s.a.md5Allowed()); err != nil {
		return nil, err
	}
	info := *p.ImageInfo
	return func(ctx context.Context, job *Job) (any, error) {
		return s.a.writeImage(ctx, job, withConfigdrive(info, p.Configdrive))
	}, nil
}

// noParams is Prepare for commands that take no parameters (any given are
// ignored, as IPA ignores unknown keyword arguments of such commands).
func noParams(run RunFunc) func(json.RawMessage) (RunFunc, error) {
	return func(raw json.RawMessage) (RunFunc, error) {
		var v map[string]any
		if err := decodeParams(raw, &v); err != nil {
			return nil, err
		}
		return run, nil
	}
}
