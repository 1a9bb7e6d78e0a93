package internalinfo

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// The keys are converted by hand, without reflection. A key holds what
// encoding/json decodes (string, bool, float64, nil, []any,
// map[string]any); Decode gives each field exactly what a round trip of
// the key's value through JSON (json.Marshal, then json.Unmarshal into
// the field) gives, and Encode writes back exactly what a round trip of
// the field into an any gives. A value the hand-written conversion does
// not reproduce exactly (an error, a string that is not UTF-8, a step
// key JSON matches to a field but for case, ...) goes through JSON, as
// every value once did. The steps' args and argsinfo are raw JSON text:
// Decode writes it itself (appendJSON) and remembers the value it wrote
// it from, which Encode copies instead of parsing the text (rawMemo).

// stepKeys are the driver_internal_info keys of one step kind.
type stepKeys struct{ plan, index, started, skip, cached, refreshed, reboot string }

func keysOf(k wire.StepKind) stepKeys {
	ing := map[wire.StepKind]string{wire.DeployStepKind: "deployment", wire.CleanStepKind: "cleaning",
		wire.ServiceStepKind: "servicing"}[k]
	s := string(k)
	return stepKeys{plan: s + "_steps", index: s + "_step_index", started: s + "_step_started", skip: "skip_current_" + s + "_step",
		cached: "agent_cached_" + s + "_steps", refreshed: "agent_cached_" + s + "_steps_refreshed",
		reboot: ing + "_reboot"}
}

// kindKeys are the keys of the deploy, clean and service steps.
var kindKeys = [3]stepKeys{keysOf(wire.DeployStepKind), keysOf(wire.CleanStepKind), keysOf(wire.ServiceStepKind)}

// visitor is given each key Info owns and a pointer to its field.
type visitor interface{ visit(key string, p any) }

// walk visits the keys Info owns but the erase settings, always in the
// same order (the first bad key is the one reported).
func (i *Info) walk(v visitor) {
	v.visit("agent_url", &i.Agent.URL)
	v.visit("agent_secret_token", &i.Agent.Token)
	v.visit("agent_secret_token_pregenerated", &i.Agent.TokenPregenerated)
	v.visit("agent_secret_token_handed_out", &i.Agent.TokenHandedOut)
	v.visit("agent_version", &i.Agent.Version)
	v.visit("agent_last_heartbeat", &i.Agent.LastHeartbeat)
	v.visit("agent_verify_ca", &i.Agent.VerifyCA)
	v.visit("agent_verify_ca_pem", &i.Agent.VerifyCAPEM)
	v.visit("agent_heartbeat_pending", &i.Agent.HeartbeatPending)
	v.visit("agent_status", &i.Agent.Status)
	v.visit("agent_status_message", &i.Agent.StatusMessage)
	v.visit("hardware_manager_version", &i.Agent.HardwareManagerVersion)
	v.visit("agent_logs_path", &i.Agent.LogsPath)

	v.visit("is_whole_disk_image", &i.Image.WholeDisk)
	v.visit("root_uuid_or_disk_id", &i.Image.RootUUIDOrDiskID)
	v.visit("efi_system_partition_uuid", &i.Image.EFISystemPartitionUUID)
	v.visit("deploy_progress", &i.Image.Progress)
	v.visit("deploy_timings", &i.Image.Timings)
	v.visit("deploy_timestamps", &i.Image.Timestamps)

	v.visit("deploy_boot_mode", &i.BootMode)
	v.visit("ramdisk_kernel_params", &i.KernelParams)
	v.visit("user_clean_steps", &i.UserCleanSteps)
	v.visit("cleaning_finishing", &i.CleaningFinishing)
	v.visit("power_request", &i.PowerRequest)
	v.visit("inspection_data_received", &i.InspectionReceived)
	v.visit("user_deploy_steps", &i.UserDeploySteps)
	v.visit("service_steps_requested", &i.UserServiceSteps)
	v.visit("service_disable_ramdisk", &i.ServiceDisableRamdisk)
	v.visit("service_ramdisk_booted", &i.ServiceRamdisk)

	for n, s := range [3]*Steps{&i.Deploy, &i.Clean, &i.Service} {
		keys := &kindKeys[n]
		v.visit(keys.plan, &s.Plan)
		v.visit(keys.index, &s.Index)
		v.visit(keys.started, &s.Started)
		v.visit(keys.skip, &s.SkipCurrent)
		v.visit(keys.cached, &s.Cached)
		v.visit(keys.refreshed, &s.Refreshed)
		v.visit(keys.reboot, &s.Reboot)
	}
}

// eraseKey binds one erase setting to its key; exactly one of n and b is
// set.
type eraseKey struct {
	key string
	n   *int
	b   *bool
}

// keys binds e's settings to their keys, in the order they are read.
func (e *EraseSettings) keys() [8]eraseKey {
	return [8]eraseKey{
		{key: "agent_erase_devices_iterations", n: &e.Iterations},
		{key: "agent_erase_devices_zeroize", b: &e.Zeroize},
		{key: "agent_continue_if_secure_erase_failed", b: &e.ContinueIfSecureEraseFails},
		{key: "agent_continue_if_ata_erase_failed", b: &e.ContinueIfATAEraseFails},
		{key: "agent_enable_nvme_secure_erase", b: &e.EnableNVMeSecureErase},
		{key: "agent_enable_ata_secure_erase", b: &e.EnableATASecureErase},
		{key: "disk_erasure_concurrency", n: &e.Concurrency},
		{key: "agent_erase_skip_read_only", b: &e.SkipReadOnly},
	}
}

// Decode reads the typed view of a node's driver_internal_info. A key
// whose value has the wrong shape is an error that names it.
func Decode(n *store.Node) (*Info, error) {
	i := &Info{}
	d := &decoder{m: n.DriverInternalInfo}
	i.walk(d)
	// The erase settings are the node's as soon as one is set.
	var e EraseSettings
	seen := false
	for _, k := range e.keys() {
		if v, ok := d.m[k.key]; ok && v != nil && d.err == nil {
			seen = true
			if k.n != nil {
				d.decode(k.key, v, k.n)
			} else if b, ok := v.(bool); ok {
				*k.b = b
			} else {
				d.viaJSON(k.key, v, k.b)
			}
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("node %s: %w", n.UUID, d.err)
	}
	if seen {
		i.Erase = &e
	}
	i.raw = d.memo
	return i, nil
}

// HeartbeatPending reports whether the node has a heartbeat recorded and
// not yet processed (Agent.HeartbeatPending), reading only that key: the
// search for pending work asks it of many nodes.
func HeartbeatPending(n *store.Node) bool {
	s, _ := n.DriverInternalInfo["agent_heartbeat_pending"].(string)
	return s != ""
}

// Encode writes the typed view back into the node's driver_internal_info
// (keys it does not own are kept) and sets node.deploy_step to the
// deploy's current step ({} when none).
func (i *Info) Encode(n *store.Node) error {
	e := &encoder{n: n, memo: i.raw}
	i.walk(e)
	if e.err == nil {
		set := i.Erase
		if set == nil {
			set = &EraseSettings{}
		}
		for _, k := range set.keys() {
			switch {
			case i.Erase == nil:
				e.put(k.key, nil, false)
			case k.n != nil:
				e.putNumber(k.key, *k.n)
			default:
				e.put(k.key, *k.b, true)
			}
		}
	}
	if e.err != nil {
		return fmt.Errorf("node %s: %w", n.UUID, e.err)
	}
	step, ok := i.Deploy.Current()
	if !ok {
		n.DeployStep = map[string]any{}
		return nil
	}
	step.RequiresRamdisk = false
	if m, ok := e.memo.stepValue(&step); ok {
		n.DeployStep = m
		return nil
	}
	n.DeployStep = map[string]any{}
	if err := jsonRoundTrip(step, &n.DeployStep); err != nil {
		return fmt.Errorf("node %s: deploy_step: %w", n.UUID, err)
	}
	return nil
}

// decoder reads each visited key from m into its field, keeping the
// first error.
type decoder struct {
	m    map[string]any
	memo rawMemo
	buf  []byte // for rawOf
	err  error
}

func (d *decoder) visit(key string, p any) {
	if v, ok := d.m[key]; ok && v != nil && d.err == nil {
		d.decode(key, v, p)
	}
}

// decode sets *p, a zero field, from v, by hand or else through JSON.
func (d *decoder) decode(key string, v any, p any) {
	ok := false
	switch p := p.(type) {
	case *string:
		s, isStr := v.(string)
		if !isStr {
			d.err = fmt.Errorf("driver_internal_info %s: %v is not a string", key, v)
			return
		}
		*p = s
		return
	case *bool:
		b, isBool := v.(bool)
		if !isBool {
			d.err = fmt.Errorf("driver_internal_info %s: %v is not a boolean", key, v)
			return
		}
		*p = b
		return
	case *int: // an erase setting
		var x int64
		if x, ok = intOf(v); ok {
			*p = int(x)
		}
	case **int:
		ok = setOf(p, v, ptrIntOf)
	case **bool:
		ok = setOf(p, v, ptrBoolOf)
	case *wire.HardwareManagerVersion:
		ok = setOf(p, v, versionOf)
	case **wire.Progress:
		ok = setOf(p, v, progressOf)
	case *map[string]float64:
		ok = setOf(p, v, floatsOf)
	case *map[string]time.Time:
		ok = setOf(p, v, timesOf)
	case *[]string:
		ok = setOf(p, v, stringsOf)
	case **PowerRequest:
		ok = setOf(p, v, powerRequestOf)
	case *[]wire.PlannedStep:
		ok = setOf(p, v, d.stepsOf)
	case *map[string][]wire.PlannedStep:
		ok = setOf(p, v, d.cachedStepsOf)
	default:
		d.err = fmt.Errorf("driver_internal_info %s: %T has no decoder", key, p)
		return
	}
	if !ok {
		d.viaJSON(key, v, p)
	}
}

// viaJSON sets *p, a zero field, from v through JSON.
func (d *decoder) viaJSON(key string, v any, p any) {
	if err := jsonRoundTrip(v, p); err != nil {
		d.err = fmt.Errorf("driver_internal_info %s: %w", key, err)
	}
}

// setOf sets *p to of(v) if of converts v exactly.
func setOf[T any](p *T, v any, of func(any) (T, bool)) bool {
	x, ok := of(v)
	if ok {
		*p = x
	}
	return ok
}

// encoder writes each visited field into n's driver_internal_info,
// stopping at the first error.
type encoder struct {
	n    *store.Node
	memo rawMemo
	err  error
}

func (e *encoder) visit(key string, p any) {
	if e.err != nil {
		return
	}
	var (
		v       any
		present bool
		ok      = true
	)
	switch p := p.(type) {
	case *string:
		e.putString(key, *p)
		return
	case *bool:
		e.put(key, *p, *p)
		return
	case **int:
		if *p == nil {
			e.put(key, nil, false)
		} else {
			e.putNumber(key, **p)
		}
		return
	case **bool:
		if present = *p != nil; present {
			v = **p
		}
	case *wire.HardwareManagerVersion:
		if present = *p != nil; present {
			v, ok = versionValue(*p)
		}
	case **wire.Progress:
		if present = *p != nil; present {
			v, ok = progressValue(*p)
		}
	case *map[string]float64:
		if present = len(*p) > 0; present {
			v, ok = floatsValue(*p)
		}
	case *map[string]time.Time:
		if present = len(*p) > 0; present {
			v, ok = timesValue(*p)
		}
	case *[]string:
		if present = len(*p) > 0; present {
			v, ok = stringsValue(*p)
		}
	case **PowerRequest:
		if present = *p != nil; present {
			v, ok = powerRequestValue(*p)
		}
	case *[]wire.PlannedStep:
		if present = *p != nil; present {
			v, ok = e.memo.stepsValue(*p)
		}
	case *map[string][]wire.PlannedStep:
		if present = *p != nil; present {
			v, ok = e.memo.cachedStepsValue(*p)
		}
	default:
		e.err = fmt.Errorf("driver_internal_info %s: %T has no encoder", key, p)
		return
	}
	if present && !ok {
		var out any // apart from v, which would then live on the heap
		if err := jsonRoundTrip(p, &out); err != nil {
			e.err = fmt.Errorf("driver_internal_info %s: %w", key, err)
			return
		}
		v = out
	}
	e.put(key, v, present)
}

// put sets key to v, or deletes it when not present.
func (e *encoder) put(key string, v any, present bool) {
	if !present {
		delete(e.n.DriverInternalInfo, key)
		return
	}
	if e.n.DriverInternalInfo == nil {
		e.n.DriverInternalInfo = map[string]any{}
	}
	e.n.DriverInternalInfo[key] = v
}

// putString sets key to s, "" deleting it. A key that already holds s is
// left as it is (a string is immutable: nothing can tell).
func (e *encoder) putString(key, s string) {
	if old, ok := e.n.DriverInternalInfo[key].(string); ok && old == s && s != "" {
		return
	}
	e.put(key, s, s != "")
}

// putNumber sets key to n as JSON decodes it, a float64. A key that
// already holds it is left as it is (as putString).
func (e *encoder) putNumber(key string, n int) {
	f := float64(n)
	if old, ok := e.n.DriverInternalInfo[key].(float64); ok && math.Float64bits(old) == math.Float64bits(f) {
		return
	}
	e.put(key, f, true)
}

// jsonRoundTrip marshals v and unmarshals the result into p: the
// conversion the hand-written ones reproduce, used for what they leave.
func jsonRoundTrip(v, p any) error {
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, p)
	}
	return err
}
