package wire

import "encoding/json"

// Step is a deploy, clean or service step as Ironic and IPA exchange it.
type Step struct {
	Step            string         `json:"step"`
	Interface       string         `json:"interface"`
	Priority        int            `json:"priority"`
	Args            map[string]any `json:"args,omitempty"`
	RebootRequested bool           `json:"reboot_requested"`
	Abortable       *bool          `json:"abortable,omitempty"`
	ArgsInfo        map[string]any `json:"argsinfo,omitempty"`
}

// HardwareManagerVersion maps a hardware manager name to its version, e.g.
// {"generic_hardware_manager": "1.2"}.
type HardwareManagerVersion map[string]string

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

// ExecuteStepParams are the params of execute_deploy_step /
// execute_clean_step / execute_service_step. Exactly one of the version
// fields is set, matching the command.
type ExecuteStepParams struct {
	Step           Step                   `json:"step"`
	Node           map[string]any         `json:"node"`
	Ports          []map[string]any       `json:"ports"`
	DeployVersion  HardwareManagerVersion `json:"deploy_version,omitempty"`
	CleanVersion   HardwareManagerVersion `json:"clean_version,omitempty"`
	ServiceVersion HardwareManagerVersion `json:"service_version,omitempty"`
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

// WriteImageArgs are the args of the write_image deploy step.
type WriteImageArgs struct {
	ImageInfo   ImageInfo `json:"image_info"`
	Configdrive *string   `json:"configdrive"`
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
