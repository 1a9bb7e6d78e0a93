package internalinfo

import (
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rivetmetal/rivet/wire"
)

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
