package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/rivetmetal/rivet/agent/logcollect"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/inventory"
	"github.com/rivetmetal/rivet/wire"
)

// collectInventory reads the hardware inventory, as the hardware managers
// contribute it, and logs how long it took.
func (a *Agent) collectInventory(ctx context.Context) (*wire.Inventory, error) {
	start := time.Now()
	inv, err := a.managers.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	a.log.Info("hardware inventory collected", "seconds", time.Since(start).Seconds(), "cpus", inv.CPU.Count,
		"memory_mib", inv.Memory.PhysicalMB, "disks", len(inv.Disks), "interfaces", len(inv.Interfaces), "boot_mode", inv.Boot.CurrentBootMode)
	return inv, nil
}

// bootIF is the normalized PXE MAC, or "".
func (a *Agent) bootIF() string {
	if a.cfg.BootIF == "" {
		return ""
	}
	m, err := hardware.NormalizeMAC(a.cfg.BootIF)
	if err != nil {
		return ""
	}
	return m
}

// inspectAttempts bounds the inspection callback.
const inspectAttempts = 5

// inspect POSTs the inventory (plus the root disk and, with the "logs"
// collector, the logs) to the inspection callback once, and returns the
// node UUID the inspector answered with, "" when none. Failures are logged
// and the agent carries on with lookup by MAC.
func (a *Agent) inspect(ctx context.Context, client *http.Client, inv *wire.Inventory) string {
	url := a.cfg.InspectionCallbackURL
	invJSON, err := json.Marshal(inv)
	if err != nil {
		a.log.Error("inspection: cannot encode the inventory; continuing with lookup", "error", err)
		return ""
	}
	data := wire.InspectionData{Inventory: invJSON, BootInterface: inv.Boot.PXEInterface,
		Configuration: wire.InspectionConfiguration{Collectors: a.cfg.InspectionCollectors,
			Managers: a.managers.Inspection()}}
	data.RootDisk = a.guessRootDisk()
	for _, c := range a.cfg.InspectionCollectors {
		if c == "logs" {
			if s, err := logcollect.Archive(a.logSources(nil), time.Now()); err == nil {
				data.Logs = s
			}
		}
	}
	body, _ := json.Marshal(data)
	for attempt := 1; ; attempt++ {
		uuid, status, err := postInspection(ctx, client, url, body)
		if err == nil {
			a.log.Info("inspection data sent", "url", url, "node", uuid, "bytes", len(body))
			return uuid
		}
		if attempt == inspectAttempts || (status >= 400 && status < 500) || ctx.Err() != nil {
			a.log.Error("inspection callback failed; continuing with lookup by MAC", "url", url, "attempts", attempt, "status", status, "error", err)
			return ""
		}
		wait := time.Duration(float64(5*time.Second) * (1 + rand.Float64()))
		a.log.Warn("inspection callback failed; retrying", "url", url, "attempt", attempt, "status", status, "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(wait):
		}
	}
}

// guessRootDisk is the inspection's root_disk: the disk picked with no
// hints, as an inventory disk entry; null when none qualifies.
func (a *Agent) guessRootDisk() json.RawMessage {
	devs, err := a.diskLister().List()
	if err != nil {
		return json.RawMessage("null")
	}
	root, err := hardware.SelectRootDevice(devs, hardware.Hints{})
	if err != nil {
		return json.RawMessage("null")
	}
	b, err := json.Marshal(inventory.Disk(root))
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func postInspection(ctx context.Context, client *http.Client, url string, body []byte) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return "", resp.StatusCode, fmt.Errorf("POST %s: HTTP %d: %s", url, resp.StatusCode, wire.FaultText(b))
	}
	var r wire.InspectionResponse
	_ = json.Unmarshal(b, &r) // an empty or non-JSON answer just names no node
	return r.UUID, resp.StatusCode, nil
}

// waitForDisks waits for a usable install disk, as IPA does before lookup:
// up to DiskWaitAttempts tries, DiskWaitDelay apart. Running out is only
// logged: inspection and cleaning work without one.
func (a *Agent) waitForDisks(ctx context.Context) {
	for i := 1; i <= max(a.cfg.DiskWaitAttempts, 1); i++ {
		devs, err := a.diskLister().List()
		if err == nil {
			if d, err := hardware.SelectRootDevice(devs, hardware.Hints{}); err == nil {
				a.log.Info("found a usable disk", "device", d.String(), "attempt", i)
				return
			}
		}
		if i == max(a.cfg.DiskWaitAttempts, 1) {
			a.log.Warn("no usable disk (4 GiB or more) appeared; carrying on without one", "attempts", i, "error", err)
			return
		}
		a.log.Info("waiting for a usable disk", "attempt", i, "of", a.cfg.DiskWaitAttempts, "retry_in", a.cfg.DiskWaitDelay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.DiskWaitDelay):
		}
	}
}
