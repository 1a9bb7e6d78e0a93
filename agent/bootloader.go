package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/rivetmetal/rivet/agent/bootloader"
	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/wire"
)

// imageExt is IPA's image extension: install_bootloader.
type imageExt struct{ a *Agent }

func (imageExt) Name() string { return "image" }

func (e imageExt) Commands() []Command {
	return []Command{{Name: "install_bootloader", Mode: Async, Prepare: e.installBootloader}}
}

// efiStore is the machine's UEFI variable store.
func (a *Agent) efiStore() efivar.Store {
	return efivar.Store{Dir: filepath.Join(a.cfg.SysRoot, "sys/firmware/efi/efivars")}
}

func (e imageExt) installBootloader(raw json.RawMessage) (RunFunc, error) {
	var p wire.InstallBootloaderParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	mode := strings.ToLower(wire.StringValue(p.TargetBootMode))
	if mode != "" && mode != "uefi" && mode != "bios" {
		return nil, ErrInvalidParams("target_boot_mode must be uefi or bios, got %q", mode)
	}
	ignore := e.a.cfg.IgnoreBootloaderFailure
	if p.IgnoreBootloaderFailure != nil {
		ignore = *p.IgnoreBootloaderFailure
	}
	return func(ctx context.Context, _ *Job) (any, error) {
		a := e.a
		dev, err := a.chooseDisk()
		if err != nil {
			return nil, err
		}
		allowGRUB := true
		if v := a.nodes.lookupConfig().EnableBIOSBootloaderInstall; v != nil {
			allowGRUB = *v
		}
		_, statErr := os.Stat(filepath.Join(a.cfg.SysRoot, "sys/firmware/efi"))
		in := &bootloader.Installer{EFI: a.efiStore(), UEFIBooted: statErr == nil, DevRoot: a.cfg.SysRoot, Log: a.log}
		req := bootloader.Request{Disk: dev, RootUUID: wire.StringValue(p.RootUUID), EFISystemPartUUID: wire.StringValue(p.EFISystemPartUUID),
			PRePBootPartUUID: wire.StringValue(p.PRePBootPartUUID), TargetBootMode: mode, AllowGRUB: allowGRUB}
		a.log.Info("installing the bootloader", "disk", dev.Path, "root_uuid", req.RootUUID, "efi_system_part_uuid", req.EFISystemPartUUID,
			"target_boot_mode", mode, "uefi_booted", in.EFI.Available())
		out, err := in.Install(ctx, req)
		if err != nil {
			if ignore {
				a.log.Warn("bootloader installation failed; ignored as ignore_bootloader_failure asks, the deploy continues", "disk", dev.Path, "error", err)
				return nil, nil
			}
			switch {
			case errors.Is(err, bootloader.ErrNoESP), errors.Is(err, bootloader.ErrRootNotFound):
				return nil, newError("DeviceNotFound", http.StatusNotFound, "Error finding the disk or partition device to deploy the image onto", err, "%v", err)
			case errors.Is(err, bootloader.ErrGRUBDisabled):
				return nil, newError("InvalidImage", http.StatusBadRequest, "The image is invalid", err, "%v", err)
			}
			return nil, newError("CommandExecutionError", http.StatusInternalServerError, "Command execution failed", err, "%v", err)
		}
		a.log.Info("bootloader installed", "disk", dev.Path, "uefi_entries", out.Entries, "grub", out.GRUB, "note", out.Note)
		return nil, nil
	}, nil
}

// uefiNVRAMStep is the clean_uefi_nvram step's description.
var uefiNVRAMStep = manager.Step{Name: "clean_uefi_nvram", Interface: "deploy", Priority: 0, Abortable: true,
	ArgsInfo: map[string]any{"match_patterns": map[string]any{
		"description": "A list of regular expressions; UEFI boot entries whose device path matches any of them are removed.",
		"required":    false,
	}}}

// defaultNVRAMPatterns are IPA's defaults for clean_uefi_nvram.
var defaultNVRAMPatterns = []string{`^HD\(`, `shim.*\.efi`, `grub.*\.efi`}

// cleanUEFINVRAMStep removes UEFI boot entries whose device path matches
// one of the patterns (case-insensitive).
func (a *Agent) cleanUEFINVRAMStep(call manager.StepCall) (manager.StepFunc, error) {
	var p struct {
		MatchPatterns []string `json:"match_patterns"`
	}
	if err := decodeArgs("clean_uefi_nvram", call.Args, &p); err != nil {
		return nil, err
	}
	if len(p.MatchPatterns) == 0 {
		p.MatchPatterns = defaultNVRAMPatterns
	}
	var res []*regexp.Regexp
	for _, pat := range p.MatchPatterns {
		re, err := regexp.Compile("(?i)" + pat)
		if err != nil {
			return nil, ErrInvalidParams("clean_uefi_nvram: match pattern %q: %v", pat, err)
		}
		res = append(res, re)
	}
	return func(ctx context.Context, _ manager.Progress) (any, error) {
		s := a.efiStore()
		if !s.Available() {
			return nil, newError("CommandExecutionError", http.StatusInternalServerError, "Command execution failed", nil,
				"clean_uefi_nvram: no UEFI variables (the ramdisk did not boot through UEFI, or efivarfs is missing)")
		}
		entries, err := s.BootEntries()
		if err != nil {
			return nil, err
		}
		var removed []string
		for _, e := range entries {
			path := e.FilePath.String()
			for _, re := range res {
				if re.MatchString(path) {
					if err := s.RemoveBootEntry(e.Num); err != nil {
						return nil, err
					}
					a.log.Info("removed UEFI boot entry", "entry", e.Name(), "label", e.Description, "path", path, "pattern", re.String())
					removed = append(removed, e.Name()+" "+e.Description)
					break
				}
			}
		}
		return map[string]any{"removed": removed}, nil
	}, nil
}
