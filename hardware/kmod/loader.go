package kmod

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrBlacklisted is returned for a module the kernel command line keeps
// out (modprobe.blacklist= or module_blacklist=).
var ErrBlacklisted = errors.New("blacklisted on the kernel command line")

// ErrNoModule is returned for a module that is neither a file in the index
// nor built into the kernel.
var ErrNoModule = errors.New("no such module")

// LoaderOptions configure a Loader. The zero value of each field is usable.
type LoaderOptions struct {
	// Logger receives one line per module loaded or failed. Zero:
	// slog.Default().
	Logger *slog.Logger
	// Params are module options by module name ("mlx4_core" →
	// "log_num_mgm_entry_size=-1"), as ParseCmdline returns them.
	Params map[string]string
	// Blacklist are module names never loaded.
	Blacklist []string
	// Present are the modules already in the kernel. Zero (nil): those
	// listed in /proc/modules when the Loader is made.
	Present []string
}

// Loader loads modules from an Index, each at most once, dependencies
// first. It is safe for concurrent use: a module being loaded by one
// caller is waited for by the others.
type Loader struct {
	ix        *Index
	log       *slog.Logger
	params    map[string]string
	blacklist map[string]bool
	present   map[string]bool
	// initModule loads one module file into the kernel; a module the
	// kernel already has gives an error matching fs.ErrExist.
	initModule func(path, params string) error

	mu     sync.Mutex
	mods   map[string]*modState
	loaded []string
	failed []Failure
}

type modState struct {
	done chan struct{}
	err  error
}

// Failure is a module that could not be loaded.
type Failure struct {
	Module string `json:"module"`
	Error  string `json:"error"`
}

// defaultInitModule is what a new Loader loads modules with: the kernel
// (tests put a fake here).
var defaultInitModule = kernelInitModule

// NewLoader returns a Loader for ix that loads modules into the running
// kernel with finit_module(2).
func NewLoader(ix *Index, opts LoaderOptions) *Loader {
	l := &Loader{ix: ix, log: opts.Logger, params: map[string]string{}, blacklist: map[string]bool{},
		present: map[string]bool{}, initModule: defaultInitModule, mods: map[string]*modState{}}
	if l.log == nil {
		l.log = slog.Default()
	}
	for k, v := range opts.Params {
		l.params[ModuleName(k)] = v
	}
	for _, b := range opts.Blacklist {
		l.blacklist[ModuleName(b)] = true
	}
	present := opts.Present
	if present == nil {
		present = procModules()
	}
	for _, m := range present {
		l.present[ModuleName(m)] = true
	}
	return l
}

// Load loads the module and, first, its dependencies; soft dependencies
// are loaded around it when they can be (their failure is only logged).
// A module built into the kernel, already loaded, or loaded before by
// this Loader returns at once (with the earlier error, if it failed).
func (l *Loader) Load(ctx context.Context, name string) error {
	return l.load(ctx, ModuleName(name), nil, true)
}

// Loaded returns the modules this Loader put into the kernel, in order.
func (l *Loader) Loaded() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.loaded)
}

// Failed returns the modules that could not be loaded, in order.
func (l *Loader) Failed() []Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failed)
}

// load loads name unless it was tried already; with wait, it waits for a
// load in progress elsewhere and returns its result. stack holds the
// modules whose dependencies are being loaded, to catch cycles.
func (l *Loader) load(ctx context.Context, name string, stack []string, wait bool) error {
	if slices.Contains(stack, name) {
		return fmt.Errorf("kmod: dependency cycle: %s -> %s", strings.Join(stack, " -> "), name)
	}
	l.mu.Lock()
	if st, ok := l.mods[name]; ok {
		l.mu.Unlock()
		if !wait {
			return nil
		}
		select {
		case <-st.done:
			return st.err
		case <-ctx.Done():
			return fmt.Errorf("kmod: wait for %s: %w", name, ctx.Err())
		}
	}
	st := &modState{done: make(chan struct{})}
	l.mods[name] = st
	l.mu.Unlock()

	st.err = l.loadNew(ctx, name, append(slices.Clone(stack), name))
	if st.err != nil && ctx.Err() == nil {
		l.mu.Lock()
		l.failed = append(l.failed, Failure{Module: name, Error: st.err.Error()})
		l.mu.Unlock()
	}
	close(st.done)
	return st.err
}

func (l *Loader) loadNew(ctx context.Context, name string, stack []string) error {
	switch {
	case l.blacklist[name]:
		return fmt.Errorf("kmod: %s: %w", name, ErrBlacklisted)
	case l.ix.Builtin(name) || l.present[name]:
		return nil
	case !l.ix.Has(name):
		return fmt.Errorf("kmod: %s: %w in %s", name, ErrNoModule, l.ix.Dir())
	}
	pre, post := l.ix.Softdeps(name)
	l.loadSoft(ctx, name, pre, stack)
	for _, d := range l.ix.Deps(name) {
		if err := l.load(ctx, d, stack, true); err != nil {
			return fmt.Errorf("kmod: %s needs %s: %w", name, d, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kmod: load %s: %w", name, err)
	}
	start := time.Now()
	err := l.initModule(l.ix.Path(name), l.params[name])
	switch {
	case errors.Is(err, fs.ErrExist):
		// Loaded meanwhile by someone else (the kernel's own request).
	case err != nil:
		l.log.Warn("kernel module failed to load", "module", name, "path", l.ix.Path(name), "error", err)
		return fmt.Errorf("kmod: load %s: %w", name, err)
	default:
		l.mu.Lock()
		l.loaded = append(l.loaded, name)
		l.mu.Unlock()
		args := []any{"module", name, "took", time.Since(start).Round(time.Millisecond)}
		if p := l.params[name]; p != "" {
			args = append(args, "params", p)
		}
		if len(stack) > 1 {
			args = append(args, "needed_by", stack[len(stack)-2])
		}
		l.log.Info("kernel module loaded", args...)
	}
	l.loadSoft(ctx, name, post, stack)
	return nil
}

// loadSoft loads soft dependencies, each a module name or an alias (often
// a crypto algorithm, "crc32c"), when this kernel has them: one that is
// built in or absent is skipped, one that fails is logged.
func (l *Loader) loadSoft(ctx context.Context, name string, softdeps, stack []string) {
	for _, s := range softdeps {
		mods := l.ix.Resolve(s)
		if len(mods) == 0 {
			l.log.Debug("soft dependency not in this ramdisk (or built in)", "module", name, "softdep", s)
			continue
		}
		for _, m := range mods {
			if err := l.load(ctx, m, stack, false); err != nil && ctx.Err() == nil {
				l.log.Warn("soft dependency not loaded", "module", name, "softdep", m, "error", err)
			}
		}
	}
}
