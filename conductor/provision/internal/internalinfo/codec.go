package internalinfo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// Decoding. Each xOf returns what JSON decodes the decoded-JSON value v
// to in a zero x, or false when it does not reproduce that exactly.

// strOf is a string field; null leaves it empty. A string that is not
// UTF-8 is left to JSON, which replaces the bad bytes.
func strOf(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, utf8.ValidString(v)
	}
	return "", false
}

func boolOf(v any) (bool, bool) {
	switch v := v.(type) {
	case nil:
		return false, true
	case bool:
		return v, true
	}
	return false, false
}

func floatOf(v any) (float64, bool) {
	switch v := v.(type) {
	case nil:
		return 0, true
	case float64:
		return v, finite(v)
	}
	return 0, false
}

// intOf is an integer field from a number (not null). JSON writes an
// integral float64 of at most 2^53 as its exact digits, and reads them
// into the integer; a larger one it writes as the shortest digits that
// read back as the float64, which need not be its value.
func intOf(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || f < -(1<<53) || f > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func ptrIntOf(v any) (*int, bool) {
	if v == nil {
		return nil, true
	}
	x, ok := intOf(v)
	if !ok {
		return nil, false
	}
	n := int(x)
	return &n, true
}

func ptrBoolOf(v any) (*bool, bool) {
	if v == nil {
		return nil, true
	}
	b, ok := v.(bool)
	if !ok {
		return nil, false
	}
	return &b, true
}

// timeOf is a time in RFC 3339. Time.UnmarshalJSON parses the JSON text
// between the quotes, unescaped: the same as the string when it holds
// nothing JSON escapes.
func timeOf(v any) (time.Time, bool) {
	if v == nil {
		return time.Time{}, true
	}
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return time.Time{}, false
		}
	}
	var t time.Time
	return t, t.UnmarshalText([]byte(s)) == nil
}

// mapOf is a map[string]T; a key that is not UTF-8 is left to JSON.
func mapOf[T any](v any, of func(any) (T, bool)) (map[string]T, bool) {
	if v == nil {
		return nil, true
	}
	m, ok := v.(map[string]any)
	if !ok || m == nil { // a nil map is null
		return nil, false
	}
	out := make(map[string]T, len(m))
	for k, x := range m {
		y, ok := of(x)
		if !ok || !utf8.ValidString(k) {
			return nil, false
		}
		out[k] = y
	}
	return out, true
}

// sliceOf is a []T.
func sliceOf[T any](v any, of func(any) (T, bool)) ([]T, bool) {
	if v == nil {
		return nil, true
	}
	a, ok := v.([]any)
	if !ok || a == nil { // a nil slice is null
		return nil, false
	}
	out := make([]T, len(a))
	for i, x := range a {
		if out[i], ok = of(x); !ok {
			return nil, false
		}
	}
	return out, true
}

func versionOf(v any) (wire.HardwareManagerVersion, bool) { return mapOf(v, strOf) }
func floatsOf(v any) (map[string]float64, bool)           { return mapOf(v, floatOf) }
func timesOf(v any) (map[string]time.Time, bool)          { return mapOf(v, timeOf) }
func stringsOf(v any) ([]string, bool)                    { return sliceOf(v, strOf) }

func (d *decoder) stepsOf(v any) ([]wire.PlannedStep, bool) { return sliceOf(v, d.stepOf) }
func (d *decoder) cachedStepsOf(v any) (map[string][]wire.PlannedStep, bool) {
	return mapOf(v, d.stepsOf)
}

// Struct fields by JSON name, to tell an unknown key (ignored) from one
// JSON matches to a field but for case.
var (
	stepNames     = []string{"step", "priority", "interface", "args", "reboot_requested", "abortable", "requires_ramdisk", "argsinfo"}
	progressNames = []string{"phase", "bytes_read", "bytes_written", "bytes_skipped", "total_bytes", "rate_bytes_per_sec",
		"eta_seconds", "started_at", "updated_at", "timings"}
	powerRequestNames = []string{"state", "timeout"}
)

// ignored reports whether JSON ignores key in an object decoded into a
// struct with fields names (key is none of them): so it does a key of
// ASCII that no name equals but for case. Any other key is left to JSON.
func ignored(key string, names []string) bool {
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			return false
		}
	}
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return false
		}
	}
	return true
}

// rawOf is a json.RawMessage: the JSON text of v. The memo keeps a
// copy of v for the text.
func (d *decoder) rawOf(v any) (json.RawMessage, bool) {
	if v == nil {
		return json.RawMessage("null"), true
	}
	text, c, ok := appendJSON(d.buf[:0], true, v, maxMemoDepth)
	if !ok {
		b, err := json.Marshal(v)
		return b, err == nil
	}
	d.buf = text
	if _, ok := d.memo[string(text)]; !ok {
		if d.memo == nil {
			d.memo = rawMemo{}
		}
		d.memo[string(text)] = c
	}
	return bytes.Clone(text), true
}

func (d *decoder) stepOf(v any) (wire.PlannedStep, bool) {
	var s wire.PlannedStep
	if v == nil {
		return s, true
	}
	m, ok := v.(map[string]any)
	if !ok || m == nil {
		return s, false
	}
	for k, x := range m {
		switch k {
		case "step":
			s.Step, ok = strOf(x)
		case "priority":
			s.Priority, ok = ptrIntOf(x)
		case "interface":
			s.Interface, ok = strOf(x)
		case "args":
			s.Args, ok = d.rawOf(x)
		case "reboot_requested":
			s.RebootRequested, ok = ptrBoolOf(x)
		case "abortable":
			s.Abortable, ok = ptrBoolOf(x)
		case "requires_ramdisk":
			s.RequiresRamdisk, ok = boolOf(x)
		case "argsinfo":
			s.ArgsInfo, ok = d.rawOf(x)
		default:
			ok = ignored(k, stepNames)
		}
		if !ok {
			return wire.PlannedStep{}, false
		}
	}
	return s, true
}

func progressOf(v any) (*wire.Progress, bool) {
	if v == nil {
		return nil, true
	}
	m, ok := v.(map[string]any)
	if !ok || m == nil {
		return nil, false
	}
	p := &wire.Progress{}
	for k, x := range m {
		switch k {
		case "phase":
			p.Phase, ok = strOf(x)
		case "bytes_read":
			ok = int64Into(x, &p.BytesRead)
		case "bytes_written":
			ok = int64Into(x, &p.BytesWritten)
		case "bytes_skipped":
			ok = int64Into(x, &p.BytesSkipped)
		case "total_bytes":
			ok = int64Into(x, &p.TotalBytes)
		case "rate_bytes_per_sec":
			p.RateBytesPerSec, ok = floatOf(x)
		case "eta_seconds":
			p.ETASeconds, ok = floatOf(x)
		case "started_at":
			p.StartedAt, ok = floatOf(x)
		case "updated_at":
			p.UpdatedAt, ok = floatOf(x)
		case "timings":
			p.Timings, ok = floatsOf(x)
		default:
			ok = ignored(k, progressNames)
		}
		if !ok {
			return nil, false
		}
	}
	return p, true
}

// int64Into sets *p from a number; null leaves it.
func int64Into(v any, p *int64) bool {
	if v == nil {
		return true
	}
	x, ok := intOf(v)
	*p = x
	return ok
}

func powerRequestOf(v any) (*PowerRequest, bool) {
	if v == nil {
		return nil, true
	}
	m, ok := v.(map[string]any)
	if !ok || m == nil {
		return nil, false
	}
	r := &PowerRequest{}
	for k, x := range m {
		switch k {
		case "state":
			r.State, ok = strOf(x)
		case "timeout":
			r.Timeout, ok = floatOf(x)
		default:
			ok = ignored(k, powerRequestNames)
		}
		if !ok {
			return nil, false
		}
	}
	return r, true
}

// Encoding. Each xValue returns what JSON decodes the JSON text of x to,
// or false when it does not reproduce that exactly (a string that is not
// UTF-8, a float that JSON cannot write, ...).

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func versionValue(v wire.HardwareManagerVersion) (any, bool) {
	out := make(map[string]any, len(v))
	for k, s := range v {
		if !utf8.ValidString(k) || !utf8.ValidString(s) {
			return nil, false
		}
		out[k] = s
	}
	return out, true
}

func floatsValue(v map[string]float64) (map[string]any, bool) {
	out := make(map[string]any, len(v))
	for k, f := range v {
		if !utf8.ValidString(k) || !finite(f) {
			return nil, false
		}
		out[k] = f
	}
	return out, true
}

func timesValue(v map[string]time.Time) (any, bool) {
	out := make(map[string]any, len(v))
	for k, t := range v {
		b, err := t.MarshalText()
		if err != nil || !utf8.ValidString(k) {
			return nil, false
		}
		out[k] = string(b)
	}
	return out, true
}

func stringsValue(v []string) (any, bool) {
	out := make([]any, len(v))
	for i, s := range v {
		if !utf8.ValidString(s) {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

func progressValue(p *wire.Progress) (any, bool) {
	if !utf8.ValidString(p.Phase) || !finite(p.RateBytesPerSec) || !finite(p.ETASeconds) ||
		!finite(p.StartedAt) || !finite(p.UpdatedAt) {
		return nil, false
	}
	m := map[string]any{"phase": p.Phase, "bytes_read": float64(p.BytesRead), "bytes_written": float64(p.BytesWritten),
		"bytes_skipped": float64(p.BytesSkipped), "total_bytes": float64(p.TotalBytes),
		"rate_bytes_per_sec": p.RateBytesPerSec, "eta_seconds": p.ETASeconds,
		"started_at": p.StartedAt, "updated_at": p.UpdatedAt}
	if len(p.Timings) > 0 {
		t, ok := floatsValue(p.Timings)
		if !ok {
			return nil, false
		}
		m["timings"] = t
	}
	return m, true
}

func powerRequestValue(r *PowerRequest) (any, bool) {
	if !utf8.ValidString(r.State) || !finite(r.Timeout) {
		return nil, false
	}
	m := map[string]any{"state": r.State}
	if r.Timeout != 0 {
		m["timeout"] = r.Timeout
	}
	return m, true
}

func (memo rawMemo) stepsValue(v []wire.PlannedStep) (any, bool) {
	if v == nil {
		return nil, true
	}
	out := make([]any, len(v))
	for i := range v {
		m, ok := memo.stepValue(&v[i])
		if !ok {
			return nil, false
		}
		out[i] = m
	}
	return out, true
}

func (memo rawMemo) cachedStepsValue(v map[string][]wire.PlannedStep) (any, bool) {
	out := make(map[string]any, len(v))
	for k, s := range v {
		steps, ok := memo.stepsValue(s)
		if !ok || !utf8.ValidString(k) {
			return nil, false
		}
		out[k] = steps
	}
	return out, true
}

func (memo rawMemo) stepValue(s *wire.PlannedStep) (map[string]any, bool) {
	if !utf8.ValidString(s.Step) || !utf8.ValidString(s.Interface) {
		return nil, false
	}
	m := make(map[string]any, 8)
	m["step"] = s.Step
	if s.Priority != nil {
		m["priority"] = float64(*s.Priority)
	}
	m["interface"] = s.Interface
	if len(s.Args) > 0 {
		a, ok := memo.rawValue(s.Args)
		if !ok {
			return nil, false
		}
		m["args"] = a
	}
	if s.RebootRequested != nil {
		m["reboot_requested"] = *s.RebootRequested
	}
	if s.Abortable != nil {
		m["abortable"] = *s.Abortable
	}
	if s.RequiresRamdisk {
		m["requires_ramdisk"] = true
	}
	if len(s.ArgsInfo) > 0 {
		a, ok := memo.rawValue(s.ArgsInfo)
		if !ok {
			return nil, false
		}
		m["argsinfo"] = a
	}
	return m, true
}

// rawValue is what JSON decodes raw JSON text to (JSON checks the text
// alike when it writes it): a copy of the memo's value for the text if it
// has one.
func (memo rawMemo) rawValue(raw json.RawMessage) (any, bool) {
	if string(raw) == "null" {
		return nil, true
	}
	if v, ok := memo[string(raw)]; ok {
		_, c, _ := appendJSON(nil, false, v, maxMemoDepth)
		return c, true
	}
	var v any
	return v, json.Unmarshal(raw, &v) == nil
}

// rawMemo maps the JSON text Decode made of a step's args or argsinfo to
// a private copy of the value it made it from. The value is plain
// decoded JSON (appendJSON), which JSON writes and reads back as itself:
// it is what JSON decodes the text to, which Encode then copies instead
// of parsing the text. Keyed by the text, an entry stays true whatever
// becomes of the steps.
type rawMemo map[string]any

// maxMemoDepth bounds the nesting of a value the memo keeps (JSON
// refuses to read text nested beyond 10,000 levels).
const maxMemoDepth = 100

// appendJSON returns a copy of v, and if text appends to b the JSON
// text json.Marshal makes of v, if v is plain decoded JSON nested at
// most depth levels: nil, a bool, a finite float64, a UTF-8 string, and
// non-nil []any and map[string]any (UTF-8 keys) of them.
func appendJSON(b []byte, text bool, v any, depth int) ([]byte, any, bool) {
	switch x := v.(type) {
	case nil:
		if text {
			b = append(b, "null"...)
		}
		return b, nil, true
	case bool:
		if text {
			b = strconv.AppendBool(b, x)
		}
		return b, v, true
	case float64:
		if text && finite(x) {
			b = appendFloat(b, x)
		}
		return b, v, finite(x)
	case string:
		if text {
			b = appendString(b, x)
		}
		return b, v, utf8.ValidString(x)
	case []any:
		if x == nil || depth == 0 {
			return b, nil, false
		}
		c := make([]any, len(x))
		b = appendByte(b, text, '[')
		for i, y := range x {
			if i > 0 {
				b = appendByte(b, text, ',')
			}
			var ok bool
			if b, c[i], ok = appendJSON(b, text, y, depth-1); !ok {
				return b, nil, false
			}
		}
		return appendByte(b, text, ']'), c, true
	case map[string]any:
		if x == nil || depth == 0 {
			return b, nil, false
		}
		var arr [16]string
		keys := arr[:0]
		for k := range x {
			if !utf8.ValidString(k) {
				return b, nil, false
			}
			keys = append(keys, k)
		}
		if text {
			slices.Sort(keys) // as json.Marshal does
		}
		c := make(map[string]any, len(x))
		b = appendByte(b, text, '{')
		for i, k := range keys {
			if text {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(appendString(b, k), ':')
			}
			var ok bool
			if b, c[k], ok = appendJSON(b, text, x[k], depth-1); !ok {
				return b, nil, false
			}
		}
		return appendByte(b, text, '}'), c, true
	}
	return b, nil, false
}

func appendByte(b []byte, text bool, c byte) []byte {
	if text {
		b = append(b, c)
	}
	return b
}

// appendFloat writes f as json.Marshal does (as ES6 does).
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1] // e-07 is e-7
		b = b[:n-1]
	}
	return b
}

// appendString writes the UTF-8 string s as json.Marshal does: HTML's
// <, > and &, control characters and U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == '\u2028' || r == '\u2029' {
				b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
				start = i + size
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		i++
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
