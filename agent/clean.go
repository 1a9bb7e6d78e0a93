package agent

// clean is IPA's clean extension: in-band clean steps.
type clean struct{ a *Agent }

func (clean) Name() string { return "clean" }

func (c clean) Commands() []Command {
	s := stepSet{a: c.a, kind: kindClean, steps: c.steps}
	return []Command{s.getCommand(), s.executeCommand()}
}

// steps are the generic clean steps with IPA's default priorities; Ironic
// overrides the two erase priorities with its own settings. Automated
// cleaning runs every step above 0, highest first.
func (c clean) steps() []stepImpl {
	a := c.a
	return []stepImpl{
		{Step: stepOf("erase_devices", "deploy", 10, true), prepare: noArgs("erase_devices", a.eraseDevicesStep)},
		{Step: stepOf("erase_devices_metadata", "deploy", 99, true), prepare: noArgs("erase_devices_metadata", a.eraseMetadataStep)},
		{Step: stepOf("erase_devices_express", "deploy", 0, true), prepare: noArgs("erase_devices_express", a.eraseExpressStep)},
		{Step: stepOf("erase_pstore", "deploy", 0, true), prepare: noArgs("erase_pstore", a.erasePstoreStep)},
		{Step: cleanUEFINVRAMStep(0), prepare: a.cleanUEFINVRAMStep},
	}
}

// service is IPA's service extension: steps run on an active node
// (Ironic's "servicing", 2023.2 and later).
type service struct{ a *Agent }

func (service) Name() string { return "service" }

func (s service) Commands() []Command {
	set := stepSet{a: s.a, kind: kindService, steps: s.steps}
	return []Command{set.getCommand(), set.executeCommand()}
}

func (s service) steps() []stepImpl {
	d := deploy(s)
	return []stepImpl{
		{Step: stepOf("write_image", "deploy", 0, false), prepare: d.writeImageStep},
		{Step: cleanUEFINVRAMStep(0), prepare: s.a.cleanUEFINVRAMStep},
	}
}
