package kmod

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Modprobe loads the modules named, or the modules a name is an alias of
// ("fs-vfat", "md-level-1", "crypto-crc32c": what the kernel asks for when
// it needs a module), with their dependencies, as modprobe does. params
// are options for the first name's module on top of the kernel command
// line's. It returns the modules it put into the kernel; the error joins
// the names that could not be resolved or loaded.
func Modprobe(ctx context.Context, cfg Config, names []string, params string) ([]string, error) {
	log, ix, opts, err := cfg.open()
	if err != nil {
		return nil, err
	}
	var errs []error
	var todo []string
	for i, name := range names {
		mods := ix.Resolve(name)
		if len(mods) == 0 {
			errs = append(errs, fmt.Errorf("kmod: %s: %w in %s", name, ErrNoModule, ix.Dir()))
			continue
		}
		if i == 0 && params != "" && len(mods) == 1 {
			opts.Params[mods[0]] = strings.TrimSpace(opts.Params[mods[0]] + " " + params)
		}
		todo = append(todo, mods...)
	}
	l := NewLoader(ix, LoaderOptions{Logger: log, Params: opts.Params, Blacklist: opts.Blacklist})
	for _, m := range todo {
		if err := l.Load(ctx, m); err != nil {
			errs = append(errs, err)
		}
	}
	return l.Loaded(), errors.Join(errs...)
}
