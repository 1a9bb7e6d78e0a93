package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Index is what depmod wrote about one kernel's modules: where each module
// is, what it depends on, which device modaliases it serves, its soft
// dependencies, and which modules are built into the kernel.
type Index struct {
	dir      string
	paths    map[string]string   // module name → absolute path
	deps     map[string][]string // module name → direct dependencies
	aliases  []alias             // patterns, in file order
	exact    map[string][]string // aliases without wildcards
	softPre  map[string][]string
	softPost map[string][]string
	builtin  map[string]bool
}

type alias struct{ pattern, module string }

// maxLine bounds one line of depmod's files; longer lines are an error.
const maxLine = 64 << 10

// LoadIndex reads modules.dep, modules.alias and, when present,
// modules.softdep and modules.builtin from dir (/lib/modules/<release>).
func LoadIndex(dir string) (*Index, error) {
	ix := &Index{dir: dir}
	read := func(name string, optional bool, parse func(io.Reader) error) error {
		f, err := os.Open(filepath.Join(dir, name))
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kmod: %w", err)
		}
		defer f.Close()
		if err := parse(f); err != nil {
			return fmt.Errorf("kmod: %s: %w", f.Name(), err)
		}
		return nil
	}
	if err := read("modules.dep", false, ix.parseDep); err != nil {
		return nil, err
	}
	if err := read("modules.alias", false, ix.parseAlias); err != nil {
		return nil, err
	}
	if err := read("modules.softdep", true, ix.parseSoftdep); err != nil {
		return nil, err
	}
	if err := read("modules.builtin", true, ix.parseBuiltin); err != nil {
		return nil, err
	}
	return ix, nil
}

// Dir is the directory the index was read from.
func (ix *Index) Dir() string { return ix.dir }

// ModuleName is the kernel's name for a module file or a name given with
// dashes: the base name without .ko and compression suffix, '-' as '_'.
func ModuleName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// lines calls fn for every non-empty, non-comment line of r.
func lines(r io.Reader, fn func(lineNo int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

// parseDep reads modules.dep: "path: dep-path dep-path ...", paths
// relative to the index directory.
func (ix *Index) parseDep(r io.Reader) error {
	ix.paths, ix.deps = map[string]string{}, map[string][]string{}
	return lines(r, func(n int, line string) error {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return fmt.Errorf("line %d: want \"module: deps\", got %q", n, line)
		}
		mod = strings.TrimSpace(mod)
		name := ModuleName(mod)
		ix.paths[name] = ix.abs(mod)
		var names []string
		for _, d := range strings.Fields(deps) {
			names = append(names, ModuleName(d))
		}
		ix.deps[name] = names
		return nil
	})
}

func (ix *Index) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(ix.dir, p)
}

// parseAlias reads modules.alias: "alias PATTERN MODULE".
func (ix *Index) parseAlias(r io.Reader) error {
	ix.aliases, ix.exact = nil, map[string][]string{}
	return lines(r, func(n int, line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("line %d: want \"alias PATTERN MODULE\", got %q", n, line)
		}
		mod := ModuleName(f[2])
		if strings.ContainsAny(f[1], "*?[\\") {
			ix.aliases = append(ix.aliases, alias{f[1], mod})
		} else {
			ix.exact[f[1]] = append(ix.exact[f[1]], mod)
		}
		return nil
	})
}

// parseSoftdep reads modules.softdep: "softdep MODULE pre: A B post: C".
func (ix *Index) parseSoftdep(r io.Reader) error {
	ix.softPre, ix.softPost = map[string][]string{}, map[string][]string{}
	return lines(r, func(n int, line string) error {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return fmt.Errorf("line %d: want \"softdep MODULE pre: ... post: ...\", got %q", n, line)
		}
		mod := ModuleName(f[1])
		var into *map[string][]string
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				into = &ix.softPre
			case "post:":
				into = &ix.softPost
			default:
				if into == nil {
					return fmt.Errorf("line %d: %q comes before any \"pre:\" or \"post:\" list", n, w)
				}
				(*into)[mod] = append((*into)[mod], ModuleName(w))
			}
		}
		return nil
	})
}

// parseBuiltin reads modules.builtin: one path per built-in module.
func (ix *Index) parseBuiltin(r io.Reader) error {
	ix.builtin = map[string]bool{}
	return lines(r, func(_ int, line string) error {
		ix.builtin[ModuleName(line)] = true
		return nil
	})
}

// Lookup returns the modules whose alias patterns match a device's
// modalias (or a name the kernel asks for, such as "fs-vfat"), each once,
// in the order modules.alias lists them.
func (ix *Index) Lookup(modalias string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(m string) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, m := range ix.exact[modalias] {
		add(m)
	}
	for _, a := range ix.aliases {
		if match(a.pattern, modalias) {
			add(a.module)
		}
	}
	return out
}

// Resolve returns the module called name, or else the modules name is an
// alias of (as modprobe NAME does).
func (ix *Index) Resolve(name string) []string {
	if m := ModuleName(name); ix.Has(m) || ix.Builtin(m) {
		return []string{m}
	}
	return ix.Lookup(name)
}

// Has reports whether the module is in modules.dep (a loadable file).
func (ix *Index) Has(name string) bool { _, ok := ix.paths[name]; return ok }

// Builtin reports whether the module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[name] }

// Path is the module's file, "" if it has none.
func (ix *Index) Path(name string) string { return ix.paths[name] }

// Deps are the modules the module needs loaded first (modules.dep).
func (ix *Index) Deps(name string) []string { return ix.deps[name] }

// Softdeps are the modules to load before and after the module, if they
// can be (modules.softdep).
func (ix *Index) Softdeps(name string) (pre, post []string) {
	return ix.softPre[name], ix.softPost[name]
}
