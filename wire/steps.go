package wire

import (
	"encoding/json"
	"fmt"
)

// Step is a deploy, clean or service step as IPA reports it (the lists of
// get_*_steps) and as the agent reads the step of execute_*_step.
type Step struct {
	Step            string         `json:"step"`
	Interface       string         `json:"interface"`
	Priority        int            `json:"priority"`
	Args            map[string]any `json:"args,omitempty"`
	RebootRequested bool           `json:"reboot_requested"`
	Abortable       *bool          `json:"abortable,omitempty"`
	ArgsInfo        map[string]any `json:"argsinfo,omitempty"`
}

// PlannedStep is a step as the conductor keeps it in a node's plan
// (driver_internal_info deploy_steps / clean_steps and the agent's cached
// steps; node.deploy_step) and sends it in execute_*_step. Ironic writes
// only the keys it knows for a step, so the optional ones are left out when
// unset: its own deploy steps carry "argsinfo": null and no
// reboot_requested, the agent's steps what the agent reported plus
// requires_ramdisk, and the write_image step it sends only interface, step
// and args.
type PlannedStep struct {
	Step      string `json:"step"`
	Priority  *int   `json:"priority,omitempty"`
	Interface string `json:"interface"`
	// Args are the step's keyword arguments, a JSON object passed through
	// as given (WriteImageArgs for write_image).
	Args            json.RawMessage `json:"args,omitempty"`
	RebootRequested *bool           `json:"reboot_requested,omitempty"`
	Abortable       *bool           `json:"abortable,omitempty"`
	// RequiresRamdisk marks a step the agent runs.
	RequiresRamdisk bool `json:"requires_ramdisk,omitempty"`
	// ArgsInfo describes the arguments; Ironic's own steps carry null.
	ArgsInfo json.RawMessage `json:"argsinfo,omitempty"`
}

// Planned returns the agent's step as the conductor plans it: every key the
// agent reported, marked requires_ramdisk.
func (s Step) Planned() (PlannedStep, error) {
	p := PlannedStep{Step: s.Step, Priority: &s.Priority, Interface: s.Interface, Abortable: s.Abortable,
		RebootRequested: &s.RebootRequested, RequiresRamdisk: true}
	var err error
	if s.Args != nil {
		if p.Args, err = json.Marshal(s.Args); err != nil {
			return p, fmt.Errorf("step %s.%s: encode args: %w", s.Interface, s.Step, err)
		}
	}
	if s.ArgsInfo != nil {
		if p.ArgsInfo, err = json.Marshal(s.ArgsInfo); err != nil {
			return p, fmt.Errorf("step %s.%s: encode argsinfo: %w", s.Interface, s.Step, err)
		}
	}
	return p, nil
}

// PriorityValue is the step's priority, 0 when unset.
func (s *PlannedStep) PriorityValue() int {
	if s.Priority == nil {
		return 0
	}
	return *s.Priority
}

// Reboots reports whether the step asks for a reboot once it is done.
func (s *PlannedStep) Reboots() bool { return s.RebootRequested != nil && *s.RebootRequested }

// IsAbortable reports whether the step may be aborted while it runs.
func (s *PlannedStep) IsAbortable() bool { return s.Abortable != nil && *s.Abortable }

// Name is "<interface>.<step>".
func (s *PlannedStep) Name() string { return s.Interface + "." + s.Step }

// Same reports whether o names the same step (interface and step).
func (s *PlannedStep) Same(o PlannedStep) bool { return s.Step == o.Step && s.Interface == o.Interface }

// HardwareManagerVersion maps a hardware manager name to its version, e.g.
// {"generic_hardware_manager": "1.2"}.
type HardwareManagerVersion map[string]string

// StepKind is the kind of an in-band step: deploy, clean or service. It
// names the commands, keys and versions of the kind on the wire.
type StepKind string

// Step kinds.
const (
	DeployStepKind  StepKind = "deploy"
	CleanStepKind   StepKind = "clean"
	ServiceStepKind StepKind = "service"
)

// GetStepsCommand is "<kind>.get_<kind>_steps".
func (k StepKind) GetStepsCommand() string { return string(k) + ".get_" + string(k) + "_steps" }

// ExecuteStepCommand is "<kind>.execute_<kind>_step".
func (k StepKind) ExecuteStepCommand() string { return string(k) + ".execute_" + string(k) + "_step" }

// ExecuteStepName is the short command name the agent reports for
// ExecuteStepCommand: "execute_<kind>_step".
func (k StepKind) ExecuteStepName() string { return "execute_" + string(k) + "_step" }

// GetStepsName is the short name of GetStepsCommand: "get_<kind>_steps".
func (k StepKind) GetStepsName() string { return "get_" + string(k) + "_steps" }

// GetStepsParams are the params of get_deploy_steps / get_clean_steps /
// get_service_steps.
type GetStepsParams struct {
	Node  map[string]any   `json:"node"`
	Ports []map[string]any `json:"ports"`
}

// DeploySteps is the command_result of deploy.get_deploy_steps.
type DeploySteps struct {
	DeploySteps            map[string][]Step      `json:"deploy_steps"`
	HardwareManagerVersion HardwareManagerVersion `json:"hardware_manager_version"`
}

// CleanSteps is the command_result of clean.get_clean_steps.
type CleanSteps struct {
	CleanSteps             map[string][]Step      `json:"clean_steps"`
	HardwareManagerVersion HardwareManagerVersion `json:"hardware_manager_version"`
}

// AgentSteps is the command_result of get_<kind>_steps, whatever the kind:
// the agent's steps by hardware manager and its hardware manager version.
type AgentSteps struct {
	Steps                  map[string][]Step
	HardwareManagerVersion HardwareManagerVersion
}

// DecodeAgentSteps decodes the command_result of get_<kind>_steps.
func (k StepKind) DecodeAgentSteps(r *CommandResult) (AgentSteps, error) {
	var raw map[string]json.RawMessage
	if err := r.DecodeResult(&raw); err != nil {
		return AgentSteps{}, fmt.Errorf("decode %s result: %w", k.GetStepsName(), err)
	}
	var out AgentSteps
	if b, ok := raw[string(k)+"_steps"]; ok {
		if err := json.Unmarshal(b, &out.Steps); err != nil {
			return AgentSteps{}, fmt.Errorf("decode %s result: %s_steps: %w", k.GetStepsName(), k, err)
		}
	}
	if b, ok := raw["hardware_manager_version"]; ok {
		if err := json.Unmarshal(b, &out.HardwareManagerVersion); err != nil {
			return AgentSteps{}, fmt.Errorf("decode %s result: hardware_manager_version: %w", k.GetStepsName(), err)
		}
	}
	return out, nil
}

// ExecuteStepParams are the params of execute_deploy_step /
// execute_clean_step / execute_service_step. Exactly one of the version
// fields is set, matching the command (see StepKind.ExecuteStepParams).
type ExecuteStepParams struct {
	Step           PlannedStep            `json:"step"`
	Node           map[string]any         `json:"node"`
	Ports          []map[string]any       `json:"ports"`
	DeployVersion  HardwareManagerVersion `json:"deploy_version,omitempty"`
	CleanVersion   HardwareManagerVersion `json:"clean_version,omitempty"`
	ServiceVersion HardwareManagerVersion `json:"service_version,omitempty"`
}

// ExecuteStepParams builds the params of ExecuteStepCommand, the version in
// the kind's own field.
func (k StepKind) ExecuteStepParams(step PlannedStep, node map[string]any, ports []map[string]any, version HardwareManagerVersion) ExecuteStepParams {
	p := ExecuteStepParams{Step: step, Node: node, Ports: ports}
	switch k {
	case DeployStepKind:
		p.DeployVersion = version
	case CleanStepKind:
		p.CleanVersion = version
	case ServiceStepKind:
		p.ServiceVersion = version
	}
	return p
}

// StepResult is the command_result of execute_<kind>_step, whatever the
// kind: the step's own result and the step the agent ran.
type StepResult struct {
	Result json.RawMessage
	Step   Step
}

// DecodeStepResult decodes the command_result of execute_<kind>_step
// ({"<kind>_result": …, "<kind>_step": …}).
func (k StepKind) DecodeStepResult(r *CommandResult) (StepResult, error) {
	var raw map[string]json.RawMessage
	if err := r.DecodeResult(&raw); err != nil {
		return StepResult{}, fmt.Errorf("decode %s result: %w", k.ExecuteStepName(), err)
	}
	out := StepResult{Result: raw[string(k)+"_result"]}
	if b, ok := raw[string(k)+"_step"]; ok {
		if err := json.Unmarshal(b, &out.Step); err != nil {
			return StepResult{}, fmt.Errorf("decode %s result: %s_step: %w", k.ExecuteStepName(), k, err)
		}
	}
	return out, nil
}

// DeployStepResult is the command_result of execute_deploy_step.
type DeployStepResult struct {
	DeployResult json.RawMessage `json:"deploy_result"`
	DeployStep   Step            `json:"deploy_step"`
}

// CleanStepResult is the command_result of execute_clean_step.
type CleanStepResult struct {
	CleanResult json.RawMessage `json:"clean_result"`
	CleanStep   Step            `json:"clean_step"`
}

// WriteImageStep is the name of the deploy step that writes the image.
const WriteImageStep = "write_image"

// WriteImageArgs are the args of the write_image deploy step.
type WriteImageArgs struct {
	ImageInfo   ImageInfo `json:"image_info"`
	Configdrive *string   `json:"configdrive"`
}

// Step is the write_image deploy step as Ironic sends it in
// execute_deploy_step: interface, step and these args, nothing else.
func (a WriteImageArgs) Step() (PlannedStep, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return PlannedStep{}, fmt.Errorf("encode write_image args: %w", err)
	}
	return PlannedStep{Interface: "deploy", Step: WriteImageStep, Args: b}, nil
}

// PartitionUUIDs is the command_result of standby.get_partition_uuids. The
// JSON keys contain spaces, as IPA sends them.
type PartitionUUIDs struct {
	RootUUID              string            `json:"root uuid,omitempty"`
	EFISystemPartUUID     string            `json:"efi system partition uuid,omitempty"`
	PRePBootPartitionUUID string            `json:"PReP Boot partition uuid,omitempty"`
	Partitions            map[string]string `json:"partitions,omitempty"`
}

// InstallBootloaderParams are the params of image.install_bootloader.
// Ironic sends the UUIDs as null when it has none (a whole-disk image has
// no root UUID, a BIOS node no ESP), and leaves target_boot_mode out when
// it retries an agent that refused it.
type InstallBootloaderParams struct {
	RootUUID                *string `json:"root_uuid"`
	EFISystemPartUUID       *string `json:"efi_system_part_uuid"`
	PRePBootPartUUID        *string `json:"prep_boot_part_uuid"`
	TargetBootMode          *string `json:"target_boot_mode,omitempty"`
	IgnoreBootloaderFailure *bool   `json:"ignore_bootloader_failure,omitempty"`
}

// OptionalString returns a pointer to s, or nil for an empty s: the value
// Ironic sends as null.
func OptionalString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// StringValue returns *p, or "" for nil.
func StringValue(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
