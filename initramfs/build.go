package initramfs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/mkuimage/uimage/builder"
	uinitramfs "github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"
)

// Build compiles the commands and the agent and writes the archive to
// opts.Output. The Go builds run as child processes of uimage that ctx
// cannot interrupt; ctx is checked before they start and after they end.
func Build(ctx context.Context, opts Options) (Result, error) {
	if opts.Output == "" {
		return Result{}, fmt.Errorf("initramfs: no output path")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	comp, err := ParseCompression(string(opts.Compression))
	if err != nil {
		return Result{}, err
	}
	agent := opts.AgentPackage
	if agent == "" {
		agent = DefaultAgentPackage
	}
	commands := opts.Commands
	if commands == nil {
		commands = DefaultCommands
	}
	commands = append([]string{InitPackage}, slices.DeleteFunc(slices.Clone(commands), func(c string) bool { return c == InitPackage })...)
	shell := opts.Shell
	if shell == "" && slices.ContainsFunc(commands, func(c string) bool { return commandName(c) == "gosh" }) {
		shell = "gosh"
	}
	loadModules := opts.LoadModules
	if loadModules == nil && opts.ModulesDir != "" {
		loadModules = DefaultLoadModules
	}
	moduleDir := opts.ModuleDir
	if moduleDir == "" {
		if moduleDir, err = os.Getwd(); err != nil {
			return Result{}, fmt.Errorf("initramfs: working directory: %w", err)
		}
	}

	env := golang.Default(
		golang.WithGOOS("linux"),
		golang.WithGOARCH("amd64"),
		golang.DisableCGO(),
		golang.WithWorkingDir(moduleDir),
		// gosh without its line editor (bubbline): a third of the size.
		golang.WithBuildTag("goshsmall"),
	)
	if err := checkGOAMD64(ctx, env); err != nil {
		return Result{}, err
	}
	base, err := baseArchive(opts.ModulesDir, loadModules)
	if err != nil {
		return Result{}, err
	}
	if opts.CAFile != "" {
		if err := addCAFile(base, opts.CAFile); err != nil {
			return Result{}, err
		}
	}
	if opts.FirmwareDir != "" {
		if err := addTree(base, opts.FirmwareDir); err != nil {
			return Result{}, err
		}
	}
	if slices.ContainsFunc(commands, func(c string) bool { return commandName(c) == "modprobe" }) {
		if err := addModprobeLink(base); err != nil {
			return Result{}, err
		}
	}
	tmp, err := os.MkdirTemp("", "rivet-initramfs-")
	if err != nil {
		return Result{}, fmt.Errorf("initramfs: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	out := &compressedFile{path: opts.Output, compression: comp}
	uopts := uimage.Opts{
		Env: env,
		Commands: []uimage.Commands{
			{
				Builder:   &builder.GBBBuilder{},
				Packages:  commands,
				BuildOpts: &golang.BuildOpts{ExtraArgs: useBuildCache},
			},
			{
				Builder:  builder.Binary,
				Packages: []string{agent},
				// The agent hashes and decompresses images:
				// keep the compiler's inlining.
				BuildOpts: &golang.BuildOpts{EnableInlining: true, ExtraArgs: useBuildCache},
			},
		},
		TempDir:      tmp,
		BaseArchive:  &uinitramfs.Archive{Archive: base},
		OutputFile:   out,
		InitCmd:      "init",
		UinitCmd:     commandName(agent),
		UinitArgs:    opts.AgentArgs,
		DefaultShell: shell,
		SkipLDD:      true,
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("initramfs: build %s: %w", opts.Output, err)
	}
	start := time.Now()
	log.InfoContext(ctx, "building initramfs", "output", opts.Output, "agent", agent,
		"commands", strings.Join(commandNames(commands), ","), "modules", opts.ModulesDir, "firmware", opts.FirmwareDir,
		"compression", comp)
	if err := uimage.CreateInitramfs(llogFor(ctx, log), uopts); err != nil {
		out.abort()
		return Result{}, fmt.Errorf("initramfs: build %s: %w", opts.Output, err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("initramfs: build %s: %w", opts.Output, err)
	}
	res := Result{Path: opts.Output, Compression: comp, Size: out.size, CPIOSize: out.cpioSize}
	log.InfoContext(ctx, "built initramfs", "output", res.Path, "bytes", res.Size, "cpio_bytes", res.CPIOSize,
		"elapsed", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// useBuildCache undoes the -a (rebuild everything) that uimage passes to
// go build: the outputs are the same (-trimpath, no build ID) and the build
// cache saves most of a minute per ramdisk.
var useBuildCache = []string{"-a=false"}

// checkGOAMD64 makes sure the binaries run on x86-64-v1 (QEMU TCG's default
// CPU and any old server): uimage passes the caller's environment to go build.
func checkGOAMD64(ctx context.Context, env *golang.Environ) error {
	goEnv := env.GoCmd("env", "GOAMD64")
	cmd := exec.CommandContext(ctx, goEnv.Path, goEnv.Args[1:]...)
	cmd.Env, cmd.Dir = goEnv.Env, goEnv.Dir
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("initramfs: go env GOAMD64: %w", err)
	}
	if v := strings.TrimSpace(string(out)); v != "v1" {
		return fmt.Errorf("initramfs: GOAMD64=%s in the build environment: the ramdisk must run on x86-64-v1 (set GOAMD64=v1)", v)
	}
	return nil
}

// llogFor forwards uimage's log lines to log.
func llogFor(ctx context.Context, log *slog.Logger) *llog.Logger {
	return &llog.Logger{
		Level: slog.LevelInfo,
		Sink: func(level slog.Level, format string, args ...any) {
			log.Log(ctx, level, "u-root: "+fmt.Sprintf(format, args...))
		},
	}
}

func commandNames(pkgs []string) []string {
	names := make([]string, len(pkgs))
	for i, p := range pkgs {
		names[i] = commandName(p)
	}
	return names
}
