// Package internalinfo is the typed form of the driver_internal_info keys
// the provision engine reads and writes: the steps of each kind (deploy,
// clean, service) and where they stand, the agent on record, what a deploy
// produced and how long it took, the cleaning settings, a requested power
// change and inspection data.
//
// Decode reads them from a node once; Encode writes them back, leaving
// every key it does not own alone, and keeps node.deploy_step equal to the
// deploy's current step. The keys Ironic defines keep Ironic's names and
// shapes (real Ironic clients read some of them); Rivet's own keys are
// listed apart below. An empty value is an absent key, except where the
// field is a pointer or the difference between nil and empty is noted.
package internalinfo

import (
	"fmt"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// Info is the engine's typed view of a node's driver_internal_info.
type Info struct {
	// Deploy, Clean and Service are the steps of each kind.
	Deploy, Clean, Service Steps
	// Agent is the ramdisk agent on record.
	Agent Agent
	// Image is what the deploy produced and measured.
	Image Image
	// BootMode is the boot mode the node is deployed or cleaned in
	// (deploy_boot_mode).
	BootMode string
	// KernelParams are the kernel parameters the deploy ramdisk needs
	// beyond ipa-api-url and BOOTIF while it boots for an operation
	// (ramdisk_kernel_params, Rivet's; read by conductor/boot).
	KernelParams []string
	// UserCleanSteps are the operator's manual clean steps
	// (user_clean_steps).
	UserCleanSteps []wire.PlannedStep
	// CleaningFinishing marks that cleaning is tearing down
	// (cleaning_finishing, Rivet's).
	CleaningFinishing bool
	// Erase are the erase settings the agent reads during cleaning
	// (agent_erase_devices_iterations and friends).
	Erase *EraseSettings
	// PowerRequest is a power change asked for and not yet done
	// (power_request, Rivet's).
	PowerRequest *PowerRequest
	// InspectionReceived marks that the agent's inspection data arrived
	// (inspection_data_received, Rivet's). The data itself is kept under
	// inspection_inventory and inspection_plugin_data (Rivet's), which
	// this view does not decode: they are large and read only by the API.
	InspectionReceived bool
	// UserDeploySteps are the deploy steps asked for with "active"
	// (user_deploy_steps).
	UserDeploySteps []wire.PlannedStep
	// UserServiceSteps are the operator's service steps
	// (service_steps_requested, Rivet's: Ironic keeps them in
	// service_steps until the plan replaces them).
	UserServiceSteps []wire.PlannedStep
	// ServiceDisableRamdisk says the servicing runs without the ramdisk
	// (service_disable_ramdisk); ServiceRamdisk that this servicing booted
	// it (service_ramdisk_booted, Rivet's).
	ServiceDisableRamdisk bool
	ServiceRamdisk        bool

	// raw is what Decode read the steps' args and argsinfo from, for
	// Encode.
	raw rawMemo
}

// Steps are the steps of one kind and where they stand.
type Steps struct {
	// Plan is the ordered plan (<kind>_steps); nil when none is made, empty
	// when made and empty.
	Plan []wire.PlannedStep
	// Index is the current step's index (<kind>_step_index); nil when
	// the operation has not started.
	Index *int
	// Started says the agent accepted the current step
	// (<kind>_step_started, Rivet's).
	Started bool
	// SkipCurrent says the current step, one of the conductor's own, is
	// done and waited for the agent: the next heartbeat resumes with the
	// step after it (skip_current_<kind>_step).
	SkipCurrent bool
	// Cached are the agent's steps by interface, each marked
	// requires_ramdisk (agent_cached_<kind>_steps); nil when not fetched
	// since the agent booted, empty when the agent has none.
	Cached map[string][]wire.PlannedStep
	// Refreshed is when Cached was fetched
	// (agent_cached_<kind>_steps_refreshed).
	Refreshed string
	// Reboot marks a reboot between two steps (deployment_reboot,
	// cleaning_reboot, servicing_reboot).
	Reboot bool
}

// Current returns the current step, if the index points at one.
func (s *Steps) Current() (wire.PlannedStep, bool) {
	if s.Index == nil || *s.Index < 0 || *s.Index >= len(s.Plan) {
		return wire.PlannedStep{}, false
	}
	return s.Plan[*s.Index], true
}

// IndexValue is the current index, -1 when none.
func (s *Steps) IndexValue() int {
	if s.Index == nil {
		return -1
	}
	return *s.Index
}

// SetIndex makes step i current, not yet started.
func (s *Steps) SetIndex(i int) {
	s.Index = &i
	s.Started, s.SkipCurrent = false, false
}

// Forget drops the plan and where it stands, keeping the agent's cached
// steps.
func (s *Steps) Forget() {
	s.Plan, s.Index, s.Started, s.SkipCurrent, s.Reboot = nil, nil, false, false, false
}

// Wipe drops everything of the kind (Ironic's wipe of the deploy or
// cleaning internal info).
func (s *Steps) Wipe() { *s = Steps{} }

// ForgetAgentSteps drops the agent's cached steps (the agent went away).
func (s *Steps) ForgetAgentSteps() { s.Cached, s.Refreshed = nil, "" }

// WipeOnPowerOff forgets the agent of the last ramdisk boot when the node
// powers off or reboots (Ironic's wipe_internal_info_on_power_off): its
// URL, its token unless pre-generated, its certificate, a pending
// heartbeat and the steps it reported.
func (i *Info) WipeOnPowerOff() {
	a := &i.Agent
	a.URL = ""
	if !a.TokenPregenerated {
		a.Token, a.TokenHandedOut = "", ""
	}
	a.VerifyCA, a.VerifyCAPEM, a.HeartbeatPending = "", "", ""
	for _, s := range []*Steps{&i.Deploy, &i.Clean, &i.Service} {
		s.ForgetAgentSteps()
	}
}

// Kind returns the steps of kind k.
func (i *Info) Kind(k wire.StepKind) *Steps {
	switch k {
	case wire.DeployStepKind:
		return &i.Deploy
	case wire.CleanStepKind:
		return &i.Clean
	case wire.ServiceStepKind:
		return &i.Service
	}
	panic(fmt.Sprintf("internalinfo: unknown step kind %q", k))
}

// Agent is the ramdisk agent on record.
type Agent struct {
	// URL is the callback URL, pinned until the next power off
	// (agent_url).
	URL string
	// Token is the agent token handed out on lookup
	// (agent_secret_token); TokenPregenerated says it survives power
	// offs (agent_secret_token_pregenerated).
	Token             string
	TokenPregenerated bool
	// TokenHandedOut is when a lookup handed the token out, in Ironic's
	// timestamp format (agent_secret_token_handed_out, Rivet's); "" for a
	// pre-generated token or one handed out before the key existed.
	TokenHandedOut string
	// Version is the agent's version (agent_version).
	Version string
	// LastHeartbeat is the time of its last heartbeat, in Ironic's format
	// (agent_last_heartbeat).
	LastHeartbeat string
	// VerifyCA is the path of the agent's certificate file
	// (agent_verify_ca); VerifyCAPEM the certificate itself, so that any
	// conductor can verify the agent (agent_verify_ca_pem, Rivet's).
	VerifyCA    string
	VerifyCAPEM string
	// HeartbeatPending is the time of a heartbeat recorded and not yet
	// processed (agent_heartbeat_pending, Rivet's); "" when none.
	HeartbeatPending string
	// Status and StatusMessage are what the ramdisk reported
	// (agent_status, agent_status_message).
	Status, StatusMessage string
	// HardwareManagerVersion is the agent's, from its last get_*_steps
	// (hardware_manager_version).
	HardwareManagerVersion wire.HardwareManagerVersion
	// LogsPath is where the agent's logs were last saved
	// (agent_logs_path, Rivet's).
	LogsPath string
}

// WipeTokenAndURL forgets the agent and its token, pre-generated or not
// (Ironic's wipe_token_and_url): at the end of an operation.
func (a *Agent) WipeTokenAndURL() {
	a.URL, a.Token, a.TokenPregenerated, a.TokenHandedOut = "", "", false, ""
	a.VerifyCA, a.VerifyCAPEM, a.HeartbeatPending = "", "", ""
}

// TokenUsed reports whether an agent has heartbeated since the token was
// handed out: its callback URL is on record, or its last heartbeat is
// not older than the hand-out.
func (a *Agent) TokenUsed() bool {
	return a.URL != "" || a.LastHeartbeat != "" && a.LastHeartbeat >= a.TokenHandedOut
}

// Image is what a deploy produced and measured.
type Image struct {
	// WholeDisk says the image is a whole-disk image
	// (is_whole_disk_image).
	WholeDisk *bool
	// RootUUIDOrDiskID and EFISystemPartitionUUID are what
	// get_partition_uuids reported (root_uuid_or_disk_id,
	// efi_system_partition_uuid).
	RootUUIDOrDiskID       string
	EFISystemPartitionUUID string
	// Progress is the image write's last progress (deploy_progress).
	Progress *wire.Progress
	// Timings are the deploy's phase durations in seconds
	// (deploy_timings, Rivet's).
	Timings map[string]float64
	// Timestamps are the instants the phases are measured from, while
	// the deploy runs (deploy_timestamps, Rivet's).
	Timestamps map[string]time.Time
}

// EraseSettings are the erase options the agent reads from
// driver_internal_info during cleaning.
type EraseSettings struct {
	Iterations                 int  // agent_erase_devices_iterations
	Zeroize                    bool // agent_erase_devices_zeroize
	ContinueIfSecureEraseFails bool // agent_continue_if_secure_erase_failed
	ContinueIfATAEraseFails    bool // agent_continue_if_ata_erase_failed
	EnableNVMeSecureErase      bool // agent_enable_nvme_secure_erase
	EnableATASecureErase       bool // agent_enable_ata_secure_erase
	Concurrency                int  // disk_erasure_concurrency
	SkipReadOnly               bool // agent_erase_skip_read_only
}

// DefaultEraseSettings are Ironic's defaults.
func DefaultEraseSettings() *EraseSettings {
	return &EraseSettings{Iterations: 1, Zeroize: true, EnableNVMeSecureErase: true, EnableATASecureErase: true, Concurrency: 4}
}

// PowerRequest is a power change asked for through the API.
type PowerRequest struct {
	// State is the power.State asked for.
	State string `json:"state"`
	// Timeout bounds the wait for it, in seconds; 0 is the default.
	Timeout float64 `json:"timeout,omitempty"`
}
