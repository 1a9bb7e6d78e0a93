package wire

import (
	"encoding/json"
)

// CommandStatus is the lifecycle state of a command result.
type CommandStatus string

// Command states, as IPA reports them.
const (
	StatusRunning   CommandStatus = "RUNNING"
	StatusSucceeded CommandStatus = "SUCCEEDED"
	StatusFailed    CommandStatus = "FAILED"
	// StatusVersionMismatch is sent when the step version given by the
	// conductor differs from the one this agent reports. IPA sends this exact
	// string for deploy, clean and service steps alike.
	StatusVersionMismatch CommandStatus = "CLEAN_VERSION_MISMATCH"
	// StatusVersionMismatchAlt is the other spelling Ironic accepts.
	StatusVersionMismatchAlt CommandStatus = "VERSION_MISMATCH"
)

// Finished reports whether the status is final.
func (s CommandStatus) Finished() bool { return s != StatusRunning && s != "" }

// IsVersionMismatch reports whether s is either spelling of the version-mismatch state.
func (s CommandStatus) IsVersionMismatch() bool {
	return s == StatusVersionMismatch || s == StatusVersionMismatchAlt
}

// CommandRequest is the body of POST /v1/commands/.
type CommandRequest struct {
	// Name is "<extension>.<command>".
	Name string `json:"name"`
	// Params is a JSON object; it must be present.
	Params json.RawMessage `json:"params"`
}

// CommandError is the serialized error of a failed command.
type CommandError struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details string `json:"details"`
}

// Text is what Ironic shows an operator: the details, else the message.
func (e *CommandError) Text() string {
	if e == nil {
		return ""
	}
	if e.Details != "" {
		return e.Details
	}
	return e.Message
}

// CommandResult is one command as the agent reports it (the response of POST
// /v1/commands/ and an element of GET /v1/commands/). command_params is
// deliberately absent: IPA stopped sending it in 8.0.
type CommandResult struct {
	ID            string        `json:"id"`
	CommandName   string        `json:"command_name"`
	CommandStatus CommandStatus `json:"command_status"`
	CommandError  *CommandError `json:"command_error"`
	// CommandResult is null or a JSON object. While a Rivet command is
	// RUNNING it carries {"progress": Progress}.
	CommandResult json.RawMessage `json:"command_result"`
}

// DecodeResult unmarshals the command_result object into v. A null result
// leaves v untouched.
func (r *CommandResult) DecodeResult(v any) error {
	if len(r.CommandResult) == 0 || string(r.CommandResult) == "null" {
		return nil
	}
	return json.Unmarshal(r.CommandResult, v)
}

// CommandList is the body of GET /v1/commands/: every command since the agent
// started, oldest first.
type CommandList struct {
	Commands []CommandResult `json:"commands"`
}

// Last returns the newest command, or nil when there is none.
func (l *CommandList) Last() *CommandResult {
	if len(l.Commands) == 0 {
		return nil
	}
	return &l.Commands[len(l.Commands)-1]
}

// Status is the body of GET /v1/status.
type Status struct {
	StartedAt float64 `json:"started_at"`
	Version   string  `json:"version"`
}

// Fault is the agent API's error body (WSME style).
type Fault struct {
	FaultCode   string `json:"faultcode"`
	FaultString string `json:"faultstring"`
}

// Fault codes.
const (
	FaultClient = "Client"
	FaultServer = "Server"
)

// StringResult wraps a plain-string command return the way IPA does:
// {"result": "<text>"}.
type StringResult struct {
	Result string `json:"result"`
}

// Progress is Rivet's live progress of a long command. It is carried in
// command_result under "progress" while the command runs, and in the final
// result of image writes.
type Progress struct {
	// Phase is the current stage: "download", "write", "flush", "verify", ...
	Phase string `json:"phase"`
	// BytesRead counts image bytes received from the source.
	BytesRead int64 `json:"bytes_read"`
	// BytesWritten counts bytes written to the target disk(s) (per disk).
	BytesWritten int64 `json:"bytes_written"`
	// BytesSkipped counts zero bytes not written because the target already
	// reads as zeros.
	BytesSkipped int64 `json:"bytes_skipped"`
	// TotalBytes is the expected image size, 0 when unknown.
	TotalBytes int64 `json:"total_bytes"`
	// RateBytesPerSec is the average rate since the start of the command.
	RateBytesPerSec float64 `json:"rate_bytes_per_sec"`
	// ETASeconds is the estimated time left, -1 when unknown.
	ETASeconds float64 `json:"eta_seconds"`
	// StartedAt and UpdatedAt are Unix times in seconds.
	StartedAt float64 `json:"started_at"`
	UpdatedAt float64 `json:"updated_at"`
	// Timings holds per-phase durations in seconds once phases have ended
	// and, once a compressed or qcow2 image is written, how its decode
	// phase spent the write (TimingDecodeInputWait, TimingDecodeOutputWait,
	// TimingDecodeCPU).
	Timings map[string]float64 `json:"timings,omitempty"`
}

// The decode phase's own timings in Progress.Timings. The decoder is the
// write's one serial stage: a long wait for input says the download held
// the write back, a long wait for output says the disks did, and neither
// says the decoder's CPU did.
const (
	// TimingDecodeInputWait is the time the decoder waited for served
	// bytes.
	TimingDecodeInputWait = "decode_input_wait"
	// TimingDecodeOutputWait is the time it waited for a free output
	// buffer or for the disks.
	TimingDecodeOutputWait = "decode_output_wait"
	// TimingDecodeCPU is the CPU time of the decoder's own thread (for
	// xz, summed over the threads decoding its blocks at once, so it may
	// exceed the decode phase); absent where it had none to measure
	// (qcow2).
	TimingDecodeCPU = "decode_cpu"
)

// AgentTimings are the names an agent's final Progress.Timings holds, in
// the order of the write: its phases, with the decode phase's own
// timings beneath it. Readers list them in this order, and the conductor
// makes metrics of these names only (an agent may send any).
var AgentTimings = []string{"prepare", "connect", "download", "decode", TimingDecodeInputWait, TimingDecodeOutputWait,
	TimingDecodeCPU, "write", "flush", "convert", "verify", "configdrive", "finalize"}

// ProgressResult is the command_result of a running command.
type ProgressResult struct {
	Progress *Progress `json:"progress,omitempty"`
	// Disks is the per-disk state of a command that works on several
	// disks at once (the erase steps).
	Disks []DiskProgress `json:"disks,omitempty"`
}

// ImageResult is the command_result of standby.prepare_image and the
// deploy_result of the write_image step: IPA's "result" text, plus Rivet's
// final progress with per-phase timings (Ironic ignores the extra key).
type ImageResult struct {
	Result   string    `json:"result"`
	Progress *Progress `json:"progress,omitempty"`
	// Devices lists every disk written when the image went to several
	// (rivet_target_disks); the first is the one Result names.
	Devices []string `json:"devices,omitempty"`
}
