package agent

import (
	"context"

	"github.com/rivetmetal/rivet/wire"
)

// deploy is IPA's deploy extension: in-band deploy steps.
type deploy struct{ a *Agent }

func (deploy) Name() string { return "deploy" }

func (d deploy) Commands() []Command {
	s := stepSet{a: d.a, kind: kindDeploy, steps: d.steps}
	return []Command{s.getCommand(), s.executeCommand()}
}

// steps are IPA's generic deploy steps this agent implements, priority 0:
// they run only when a deploy template asks, except write_image, which
// Ironic's out-of-band step of the same name drives.
func (d deploy) steps() []stepImpl {
	return []stepImpl{
		{Step: stepOf("erase_devices_metadata", "deploy", 0, false), prepare: noArgs("erase_devices_metadata", d.a.eraseMetadataStep)},
		{Step: stepOf("write_image", "deploy", 0, false), prepare: d.writeImageStep},
		{Step: cleanUEFINVRAMStep(0), prepare: d.a.cleanUEFINVRAMStep},
	}
}

// writeImageStep is the in-band write_image step: the same work as
// standby.prepare_image, whose result it reports.
func (d deploy) writeImageStep(raw map[string]any) (RunFunc, error) {
	var args wire.WriteImageArgs
	if err := decodeArgs("write_image", raw, &args); err != nil {
		return nil, err
	}
	if args.ImageInfo.ID == "" && len(args.ImageInfo.URLs) == 0 {
		return nil, ErrInvalidParams("write_image needs args.image_info")
	}
	if err := validateImageInfo(&args.ImageInfo, args.Configdrive, d.a.md5Allowed()); err != nil {
		return nil, err
	}
	return func(ctx context.Context, job *Job) (any, error) {
		// IPA's step calls prepare_image and reports its result.
		return d.a.writeImage(ctx, job, withConfigdrive(args.ImageInfo, args.Configdrive))
	}, nil
}
