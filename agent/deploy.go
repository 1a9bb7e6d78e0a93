package agent

import (
	"context"

	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/wire"
)

// deploy is IPA's deploy extension: in-band deploy steps.
type deploy struct{ a *Agent }

func (deploy) Name() string { return "deploy" }

func (d deploy) Commands() []Command { return stepSet{a: d.a, kind: manager.Deploy}.commands() }

// writeImageStep is the in-band write_image step (deploy and service): the
// same work as standby.prepare_image, whose result it reports.
func (a *Agent) writeImageStep(call manager.StepCall) (manager.StepFunc, error) {
	var args wire.WriteImageArgs
	if err := decodeArgs("write_image", call.Args, &args); err != nil {
		return nil, err
	}
	if args.ImageInfo.ID == "" && len(args.ImageInfo.URLs) == 0 {
		return nil, ErrInvalidParams("write_image needs args.image_info")
	}
	if err := validateImageInfo(&args.ImageInfo, args.Configdrive, a.md5Allowed()); err != nil {
		return nil, err
	}
	return func(ctx context.Context, p manager.Progress) (any, error) {
		// IPA's step calls prepare_image and reports its result.
		return a.writeImage(ctx, p, withConfigdrive(args.ImageInfo, args.Configdrive))
	}, nil
}
