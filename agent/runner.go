package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rivetmetal/rivet/wire"
)

// runner executes commands one at a time and keeps every result for the
// agent's lifetime, oldest first.
type runner struct {
	ctx     context.Context // the agent's lifetime; async work runs under it
	log     *slog.Logger
	exts    map[string]map[string]Command
	onAsync func() // called when an async command ends (forced heartbeat)

	execMu  sync.Mutex // serialises validation, sync runs and async starts
	mu      sync.Mutex
	results []*entry
	wg      sync.WaitGroup
}

type entry struct {
	id   string
	name string
	job  *Job
	done chan struct{}

	mu     sync.Mutex
	status wire.CommandStatus
	err    *wire.CommandError
	result json.RawMessage
}

func newRunner(ctx context.Context, log *slog.Logger, exts []Extension, onAsync func()) (*runner, error) {
	r := &runner{ctx: ctx, log: log, exts: map[string]map[string]Command{}, onAsync: onAsync}
	for _, e := range exts {
		if _, dup := r.exts[e.Name()]; dup {
			return nil, fmt.Errorf("extension %q registered twice", e.Name())
		}
		cmds := map[string]Command{}
		for _, c := range e.Commands() {
			cmds[c.Name] = c
		}
		r.exts[e.Name()] = cmds
	}
	return r, nil
}

// execute validates and runs the command "<ext>.<name>". A sync command has
// finished when it returns; an async one is RUNNING.
func (r *runner) execute(name string, params json.RawMessage) (*entry, error) {
	extName, cmdName, ok := strings.Cut(name, ".")
	if !ok || extName == "" || cmdName == "" {
		return nil, errInvalidCommand("Command name must be of the form <extension>.<name>")
	}
	ext, ok := r.exts[extName]
	if !ok {
		return nil, errNotFound("Extension with id %s not found.", extName)
	}
	cmd, ok := ext[cmdName]
	if !ok {
		return nil, errInvalidCommand("Unknown command: %s", name)
	}

	r.execMu.Lock()
	defer r.execMu.Unlock()
	if last := r.last(); last != nil && last.snapshot().CommandStatus == wire.StatusRunning {
		return nil, errBusy(last.name)
	}
	run, err := cmd.Prepare(params)
	if err != nil {
		var ae *Error
		if !errors.As(err, &ae) {
			err = ErrInvalidParams("%v", err)
		}
		return nil, err
	}
	e := &entry{id: uuid.NewString(), name: cmdName, job: &Job{}, done: make(chan struct{}), status: wire.StatusRunning}
	r.mu.Lock()
	r.results = append(r.results, e)
	r.mu.Unlock()
	r.log.Info("executing command", "command", name, "id", e.id, "async", cmd.Mode == Async)

	if cmd.Mode == Sync {
		r.finish(e, name, run)
		return e, nil
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.finish(e, name, run)
		if r.onAsync != nil {
			r.onAsync()
		}
	}()
	return e, nil
}

// finish runs the work and records its outcome.
func (r *runner) finish(e *entry, fullName string, run RunFunc) {
	start := time.Now()
	res, err := safeRun(r.ctx, e.job, run)
	e.mu.Lock()
	defer e.mu.Unlock()
	defer close(e.done)
	if err != nil {
		e.err = commandError(err)
		e.status = wire.StatusFailed
		var ae *Error
		if errors.As(err, &ae) && ae.Type == versionMismatchType {
			e.status = wire.StatusVersionMismatch
		}
		next := "the conductor reads the FAILED result and fails the operation; the agent waits for the next command"
		if e.status == wire.StatusVersionMismatch {
			next = "the conductor refreshes its steps and calls again"
		}
		r.log.Error("command failed", "command", fullName, "id", e.id, "status", string(e.status),
			"seconds", time.Since(start).Seconds(), "error", err, "next", next)
		return
	}
	raw, merr := encodeResult(e.name, res)
	if merr != nil {
		e.err = commandError(merr)
		e.status = wire.StatusFailed
		return
	}
	e.result = raw
	e.status = wire.StatusSucceeded
	r.log.Info("command succeeded", "command", fullName, "id", e.id, "seconds", time.Since(start).Seconds())
}

// safeRun turns a panic in a command into its error, so one bad command
// cannot take the agent down.
func safeRun(ctx context.Context, job *Job, run RunFunc) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("command panicked: %v", p)
		}
	}()
	return run(ctx, job)
}

// encodeResult marshals a command's return value; strings are wrapped the
// way IPA wraps them.
func encodeResult(name string, res any) (json.RawMessage, error) {
	switch v := res.(type) {
	case nil:
		return nil, nil
	case asyncText:
		return json.Marshal(wire.StringResult{Result: name + ": " + string(v)})
	case string:
		return json.Marshal(wire.StringResult{Result: v})
	default:
		return json.Marshal(v)
	}
}

// asyncText is the plain-string result of an async command; IPA prefixes
// it with the command name.
type asyncText string

func (r *runner) last() *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return nil
	}
	return r.results[len(r.results)-1]
}

// lastProgress is the write progress of the newest command that has one
// (the write running or last run), nil when no command wrote: the figures
// stay after the write, whatever ran since.
func (r *runner) lastProgress() *wire.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.results) - 1; i >= 0; i-- {
		if p := r.results[i].job.Progress(); p != nil {
			return p
		}
	}
	return nil
}

func (r *runner) get(id string) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.results {
		if e.id == id {
			return e
		}
	}
	return nil
}

func (r *runner) list() []wire.CommandResult {
	r.mu.Lock()
	es := append([]*entry(nil), r.results...)
	r.mu.Unlock()
	out := make([]wire.CommandResult, len(es))
	for i, e := range es {
		out[i] = e.snapshot()
	}
	return out
}

// wait blocks until e is finished or ctx ends.
func (e *entry) wait(ctx context.Context) error {
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapshot copies the entry's current state; a running command shows its
// progress.
func (e *entry) snapshot() wire.CommandResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	res := wire.CommandResult{ID: e.id, CommandName: e.name, CommandStatus: e.status, CommandError: e.err, CommandResult: e.result}
	if e.status == wire.StatusRunning {
		p, disks := e.job.Progress(), e.job.DiskProgress()
		if p != nil || len(disks) > 0 {
			res.CommandResult, _ = json.Marshal(wire.ProgressResult{Progress: p, Disks: disks})
		}
	}
	return res
}
