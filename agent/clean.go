package agent

import "github.com/rivetmetal/rivet/hardware/manager"

// clean is IPA's clean extension: in-band clean steps.
type clean struct{ a *Agent }

func (clean) Name() string { return "clean" }

func (c clean) Commands() []Command { return stepSet{a: c.a, kind: manager.Clean}.commands() }

// service is IPA's service extension: steps run on an active node
// (Ironic's "servicing", 2023.2 and later).
type service struct{ a *Agent }

func (service) Name() string { return "service" }

func (s service) Commands() []Command { return stepSet{a: s.a, kind: manager.Service}.commands() }
