package agent

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/rivetmetal/rivet/wire"
)

// Mode says whether a command runs inside its HTTP request (Sync) or in the
// background (Async).
type Mode int

// Command modes.
const (
	Sync Mode = iota
	Async
)

// RunFunc does a command's work. It returns the command_result value: nil
// for null, a string (wrapped as {"result": …} the way IPA does), or any
// JSON-marshalable value.
type RunFunc func(ctx context.Context, job *Job) (any, error)

// Command is one command of an extension.
type Command struct {
	// Name is the short name, e.g. "prepare_image".
	Name string
	Mode Mode
	// Prepare decodes and validates the params and returns the work to do.
	// Its error is a 400 answer, never a FAILED result; return
	// ErrInvalidParams for bad input.
	Prepare func(params json.RawMessage) (RunFunc, error)
}

// Extension is a named set of commands ("standby", "deploy", …).
type Extension interface {
	Name() string
	Commands() []Command
}

// Job is the handle a running command uses to publish progress; it shows in
// command_result while the command runs.
type Job struct {
	mu       sync.Mutex
	progress *wire.Progress
	disks    []wire.DiskProgress
}

// SetProgress publishes p.
func (j *Job) SetProgress(p wire.Progress) {
	j.mu.Lock()
	j.progress = &p
	j.mu.Unlock()
}

// SetDiskProgress publishes the state of one disk of a multi-disk command,
// replacing the earlier state of the same device.
func (j *Job) SetDiskProgress(p wire.DiskProgress) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range j.disks {
		if j.disks[i].Device == p.Device {
			j.disks[i] = p
			return
		}
	}
	j.disks = append(j.disks, p)
}

// DiskProgress returns a copy of the per-disk states.
func (j *Job) DiskProgress() []wire.DiskProgress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]wire.DiskProgress(nil), j.disks...)
}

// Progress returns the last published progress, nil if none.
func (j *Job) Progress() *wire.Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.progress == nil {
		return nil
	}
	p := *j.progress
	return &p
}

// decodeParams unmarshals params into v, reporting a 400 on failure.
func decodeParams(params json.RawMessage, v any) error {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return ErrInvalidParams("%v", err)
	}
	return nil
}
