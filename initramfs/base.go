package initramfs

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
)

// resolvConf is the archive path of the resolver configuration. u-root's
// default base writes a public resolver there; the deploy ramdisk ships an
// empty one that the agent fills from DHCP.
const resolvConf = "etc/resolv.conf"

// modulesLoadConf is read by u-root's init (libinit.InstallAllModules).
const modulesLoadConf = "lib/modules-load.d/rivet.conf"

// baseArchive returns the records under the built binaries: u-root's
// default directories and device nodes with an empty resolv.conf, the
// kernel-modules tree and the modules-load.d file.
func baseArchive(modulesDir string, loadModules []string) (*cpio.Archive, error) {
	a := cpio.InMemArchive()
	def := uimage.DefaultRamfs()
	for _, name := range def.Order {
		if name == resolvConf {
			continue
		}
		if err := a.WriteRecord(def.Files[name]); err != nil {
			return nil, err
		}
	}
	if err := a.WriteRecord(cpio.StaticFile(resolvConf, "", 0o644)); err != nil {
		return nil, err
	}
	if modulesDir != "" {
		if err := addTree(a, modulesDir); err != nil {
			return nil, err
		}
	}
	if len(loadModules) > 0 {
		if modulesDir == "" {
			return nil, fmt.Errorf("initramfs: modules to load (%s) but no modules directory", strings.Join(loadModules, " "))
		}
		if err := checkModulesDep(modulesDir); err != nil {
			return nil, err
		}
		if _, ok := a.Get("lib/modules-load.d"); !ok {
			if err := a.WriteRecord(cpio.Directory("lib/modules-load.d", 0o755)); err != nil {
				return nil, err
			}
		}
		conf := "# Loaded by u-root init at boot; dependencies come from modules.dep.\n" +
			strings.Join(loadModules, "\n") + "\n"
		if err := a.WriteRecord(cpio.StaticFile(modulesLoadConf, conf, 0o644)); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// modprobePath is where the kernel runs modprobe from (CONFIG_MODPROBE_PATH).
const modprobePath = "sbin/modprobe"

// addModprobeLink links /sbin/modprobe to the busybox's modprobe.
func addModprobeLink(a *cpio.Archive) error {
	if _, ok := a.Get("sbin"); !ok {
		if err := a.WriteRecord(cpio.Directory("sbin", 0o755)); err != nil {
			return err
		}
	}
	return a.WriteRecord(cpio.Symlink(modprobePath, "../bbin/modprobe"))
}

// addTree adds every file, directory and symlink under root to a, at the
// same path relative to the archive's root, parents before children. A
// directory already in a (lib/ of an earlier tree) is not added again; a
// file already in a is an error.
func addTree(a *cpio.Archive, root string) error {
	rec := cpio.NewRecorder()
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("initramfs: walk tree %s: %w", root, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("initramfs: walk tree %s: %w", p, err)
		}
		if rel == "." {
			return nil
		}
		if old, ok := a.Get(filepath.ToSlash(rel)); ok {
			if d.IsDir() && old.Mode&cpio.S_IFMT == cpio.S_IFDIR {
				return nil
			}
			return fmt.Errorf("initramfs: %s from %s is already in the archive", rel, root)
		}
		r, err := rec.GetRecord(p)
		if err != nil {
			return fmt.Errorf("initramfs: read %s: %w", p, err)
		}
		r.Name = filepath.ToSlash(rel)
		return a.WriteRecord(r)
	})
}

// checkModulesDep makes sure modules-load.d will work: u-root resolves
// module names and dependencies through lib/modules/<version>/modules.dep,
// and without one every module silently fails to load.
func checkModulesDep(modulesDir string) error {
	deps, err := filepath.Glob(filepath.Join(modulesDir, "lib", "modules", "*", "modules.dep"))
	if err != nil {
		return fmt.Errorf("initramfs: look for modules.dep in %s: %w", modulesDir, err)
	}
	if len(deps) == 0 {
		return fmt.Errorf("initramfs: no lib/modules/<version>/modules.dep under %s (run depmod -b): %w",
			modulesDir, os.ErrNotExist)
	}
	return nil
}

// commandName is the name under which uimage installs the binary of a
// package (its last path element).
func commandName(pkg string) string {
	return path.Base(filepath.ToSlash(strings.TrimRight(pkg, "/")))
}
