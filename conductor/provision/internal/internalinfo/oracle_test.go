package internalinfo

// The oracle: Decode and Encode as they were before the hand-written
// conversion, every object key through a JSON round trip. The
// equivalence tests hold the new ones to it.

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// oldStepKeys are the driver_internal_info keys of one step kind.
type oldStepKeys struct{ plan, index, started, skip, cached, refreshed, reboot string }

func oldKeysOf(k wire.StepKind) oldStepKeys {
	ing := map[wire.StepKind]string{wire.DeployStepKind: "deployment", wire.CleanStepKind: "cleaning",
		wire.ServiceStepKind: "servicing"}[k]
	s := string(k)
	return oldStepKeys{plan: s + "_steps", index: s + "_step_index", started: s + "_step_started", skip: "skip_current_" + s + "_step",
		cached: "agent_cached_" + s + "_steps", refreshed: "agent_cached_" + s + "_steps_refreshed",
		reboot: ing + "_reboot"}
}

// oldField binds one key to its place in Info.
type oldField struct {
	key    string
	decode func(v any) error
	// encode returns the JSON value and whether the key is present.
	encode func() (any, bool, error)
}

func (i *Info) oldFields() []oldField {
	f := []oldField{
		oldStr("agent_url", &i.Agent.URL),
		oldStr("agent_secret_token", &i.Agent.Token),
		oldFlag("agent_secret_token_pregenerated", &i.Agent.TokenPregenerated),
		oldStr("agent_secret_token_handed_out", &i.Agent.TokenHandedOut),
		oldStr("agent_version", &i.Agent.Version),
		oldStr("agent_last_heartbeat", &i.Agent.LastHeartbeat),
		oldStr("agent_verify_ca", &i.Agent.VerifyCA),
		oldStr("agent_verify_ca_pem", &i.Agent.VerifyCAPEM),
		oldStr("agent_heartbeat_pending", &i.Agent.HeartbeatPending),
		oldStr("agent_status", &i.Agent.Status),
		oldStr("agent_status_message", &i.Agent.StatusMessage),
		oldObject("hardware_manager_version", &i.Agent.HardwareManagerVersion, func(v wire.HardwareManagerVersion) bool { return v != nil }),
		oldStr("agent_logs_path", &i.Agent.LogsPath),

		oldObject("is_whole_disk_image", &i.Image.WholeDisk, func(v *bool) bool { return v != nil }),
		oldStr("root_uuid_or_disk_id", &i.Image.RootUUIDOrDiskID),
		oldStr("efi_system_partition_uuid", &i.Image.EFISystemPartitionUUID),
		oldObject("deploy_progress", &i.Image.Progress, func(v *wire.Progress) bool { return v != nil }),
		oldObject("deploy_timings", &i.Image.Timings, func(v map[string]float64) bool { return len(v) > 0 }),
		oldObject("deploy_timestamps", &i.Image.Timestamps, func(v map[string]time.Time) bool { return len(v) > 0 }),

		oldStr("deploy_boot_mode", &i.BootMode),
		oldObject("ramdisk_kernel_params", &i.KernelParams, func(v []string) bool { return len(v) > 0 }),
		oldObject("user_clean_steps", &i.UserCleanSteps, func(v []wire.PlannedStep) bool { return v != nil }),
		oldFlag("cleaning_finishing", &i.CleaningFinishing),
		oldObject("power_request", &i.PowerRequest, func(v *PowerRequest) bool { return v != nil }),
		oldFlag("inspection_data_received", &i.InspectionReceived),
		oldObject("user_deploy_steps", &i.UserDeploySteps, func(v []wire.PlannedStep) bool { return v != nil }),
		oldObject("service_steps_requested", &i.UserServiceSteps, func(v []wire.PlannedStep) bool { return v != nil }),
		oldFlag("service_disable_ramdisk", &i.ServiceDisableRamdisk),
		oldFlag("service_ramdisk_booted", &i.ServiceRamdisk),
	}
	for _, k := range []wire.StepKind{wire.DeployStepKind, wire.CleanStepKind, wire.ServiceStepKind} {
		s, keys := i.Kind(k), oldKeysOf(k)
		f = append(f,
			oldObject(keys.plan, &s.Plan, func(v []wire.PlannedStep) bool { return v != nil }),
			oldObject(keys.index, &s.Index, func(v *int) bool { return v != nil }),
			oldFlag(keys.started, &s.Started),
			oldFlag(keys.skip, &s.SkipCurrent),
			oldObject(keys.cached, &s.Cached, func(v map[string][]wire.PlannedStep) bool { return v != nil }),
			oldStr(keys.refreshed, &s.Refreshed),
			oldFlag(keys.reboot, &s.Reboot))
	}
	return append(f, i.oldEraseFields()...)
}

// oldEraseFields bind the erase settings, written all together.
func (i *Info) oldEraseFields() []oldField {
	e := i.Erase
	if e == nil {
		e = &EraseSettings{}
	}
	return []oldField{
		i.oldEraseField("agent_erase_devices_iterations", &e.Iterations, e),
		i.oldEraseField("agent_erase_devices_zeroize", &e.Zeroize, e),
		i.oldEraseField("agent_continue_if_secure_erase_failed", &e.ContinueIfSecureEraseFails, e),
		i.oldEraseField("agent_continue_if_ata_erase_failed", &e.ContinueIfATAEraseFails, e),
		i.oldEraseField("agent_enable_nvme_secure_erase", &e.EnableNVMeSecureErase, e),
		i.oldEraseField("agent_enable_ata_secure_erase", &e.EnableATASecureErase, e),
		i.oldEraseField("disk_erasure_concurrency", &e.Concurrency, e),
		i.oldEraseField("agent_erase_skip_read_only", &e.SkipReadOnly, e),
	}
}

// oldEraseField binds one erase setting of e: decoding it makes e the
// node's settings; it is written, as JSON decodes it, when the node has
// settings.
func (i *Info) oldEraseField(key string, p any, e *EraseSettings) oldField {
	return oldField{key: key,
		decode: func(v any) error {
			i.Erase = e
			return oldDecodeJSON(key, v, p)
		},
		encode: func() (any, bool, error) {
			switch x := p.(type) {
			case *int:
				return float64(*x), i.Erase != nil, nil
			case *bool:
				return *x, i.Erase != nil, nil
			}
			return nil, false, fmt.Errorf("driver_internal_info %s: %T is no erase setting", key, p)
		}}
}

// oldStr binds a string key; "" is absent.
func oldStr(key string, p *string) oldField {
	return oldField{key: key,
		decode: func(v any) error {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("driver_internal_info %s: %v is not a string", key, v)
			}
			*p = s
			return nil
		},
		encode: func() (any, bool, error) { return *p, *p != "", nil }}
}

// oldFlag binds a boolean key; false is absent.
func oldFlag(key string, p *bool) oldField {
	return oldField{key: key,
		decode: func(v any) error {
			b, ok := v.(bool)
			if !ok {
				return fmt.Errorf("driver_internal_info %s: %v is not a boolean", key, v)
			}
			*p = b
			return nil
		},
		encode: func() (any, bool, error) { return *p, *p, nil }}
}

// oldObject binds a key whose value goes through JSON; present says whether
// the key is written.
func oldObject[T any](key string, p *T, present func(T) bool) oldField {
	return oldField{key: key,
		decode: func(v any) error { return oldDecodeJSON(key, v, p) },
		encode: func() (any, bool, error) {
			if !present(*p) {
				return nil, false, nil
			}
			b, err := json.Marshal(*p)
			if err != nil {
				return nil, false, fmt.Errorf("driver_internal_info %s: %w", key, err)
			}
			var out any
			if err := json.Unmarshal(b, &out); err != nil {
				return nil, false, fmt.Errorf("driver_internal_info %s: %w", key, err)
			}
			return out, true, nil
		}}
}

func oldDecodeJSON(key string, v any, p any) error {
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, p)
	}
	if err != nil {
		return fmt.Errorf("driver_internal_info %s: %w", key, err)
	}
	return nil
}

// Decode reads the typed view of a node's driver_internal_info. A key
// whose value has the wrong shape is an error that names it.
func oldDecode(n *store.Node) (*Info, error) {
	i := &Info{}
	for _, f := range i.oldFields() {
		v, ok := n.DriverInternalInfo[f.key]
		if !ok || v == nil {
			continue
		}
		if err := f.decode(v); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.UUID, err)
		}
	}
	return i, nil
}

// Encode writes the typed view back into the node's driver_internal_info
// (keys it does not own are kept) and sets node.deploy_step to the
// deploy's current step ({} when none).
func (i *Info) oldEncode(n *store.Node) error {
	for _, f := range i.oldFields() {
		v, ok, err := f.encode()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.UUID, err)
		}
		if !ok {
			delete(n.DriverInternalInfo, f.key)
			continue
		}
		if n.DriverInternalInfo == nil {
			n.DriverInternalInfo = map[string]any{}
		}
		n.DriverInternalInfo[f.key] = v
	}
	n.DeployStep = map[string]any{}
	if step, ok := i.Deploy.Current(); ok {
		step.RequiresRamdisk = false
		b, err := json.Marshal(step)
		if err == nil {
			err = json.Unmarshal(b, &n.DeployStep)
		}
		if err != nil {
			return fmt.Errorf("node %s: deploy_step: %w", n.UUID, err)
		}
	}
	return nil
}
