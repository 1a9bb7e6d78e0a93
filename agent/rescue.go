package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// rescue is IPA's rescue extension: finalize_rescue.
type rescue struct{ a *Agent }

func (rescue) Name() string { return "rescue" }

func (r rescue) Commands() []Command {
	return []Command{{Name: "finalize_rescue", Mode: Sync, Prepare: r.finalize}}
}

// Where finalize_rescue leaves the rescue password for the ramdisk's
// rescue user, and its marker.
const (
	rescuePasswordFile = "etc/ipa-rescue-config/ipa-rescue-password"
	rescuedMarker      = "etc/.rescued"
)

func (r rescue) finalize(raw json.RawMessage) (RunFunc, error) {
	var p struct {
		RescuePassword *string `json:"rescue_password"`
		Hashed         bool    `json:"hashed"`
	}
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.RescuePassword == nil || *p.RescuePassword == "" {
		return nil, ErrInvalidParams("rescue_password is required")
	}
	if !p.Hashed {
		// Ironic has sent a crypt(3) hash with hashed=true since Ussuri.
		return nil, ErrInvalidParams("rescue_password must be sent pre-hashed (hashed=true), as Ironic sends it")
	}
	if strings.ContainsAny(*p.RescuePassword, "\n\r") {
		return nil, ErrInvalidParams("rescue_password must be a single line")
	}
	pw := *p.RescuePassword
	return func(ctx context.Context, _ *Job) (any, error) {
		root := r.a.rescueRoot()
		f := filepath.Join(root, rescuePasswordFile)
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return nil, fmt.Errorf("finalize rescue: %w", err)
		}
		if err := os.WriteFile(f, []byte(pw), 0o600); err != nil {
			return nil, fmt.Errorf("finalize rescue: %w", err)
		}
		if err := os.WriteFile(filepath.Join(root, rescuedMarker), nil, 0o644); err != nil {
			return nil, fmt.Errorf("finalize rescue: %w", err)
		}
		r.a.log.Info("rescue password written; the API stops after this answer and the agent stays up for the rescue user",
			"file", f)
		r.a.stopServing(stopRescue)
		return nil, nil
	}, nil
}

// rescueRoot is where the rescue files go: "/" in the ramdisk, a private
// directory on other machines, or Config.RescueRoot.
func (a *Agent) rescueRoot() string {
	switch {
	case a.cfg.RescueRoot != "":
		return a.cfg.RescueRoot
	case InRamdisk():
		return "/"
	default:
		return filepath.Join(os.TempDir(), "rivet-agent-rescue")
	}
}

// system is IPA's system extension: lockdown.
type system struct{ a *Agent }

func (system) Name() string { return "system" }

func (s system) Commands() []Command {
	return []Command{{Name: "lockdown", Mode: Sync, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
		s.a.power.Sync()
		s.a.log.Warn("lockdown: the API stops after this answer, heartbeats stop and the network interfaces go down; the agent then idles")
		s.a.stopServing(stopLockdown)
		return nil, nil
	})}}
}

// poll is IPA's poll extension: get_hardware_info.
type poll struct{ a *Agent }

func (poll) Name() string { return "poll" }

func (p poll) Commands() []Command {
	return []Command{{Name: "get_hardware_info", Mode: Sync, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
		return p.a.collectInventory(ctx)
	})}}
}
