package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/agent/logcollect"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/inventory"
	"github.com/rivetmetal/rivet/internal/pause"
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

// retryPolicy says how often, and how far apart, a call is tried.
type retryPolicy struct {
	attempts int
	// wait is the pause after the given failed attempt (1-based).
	wait func(attempt int) time.Duration
}

// inspectRetry is IPA's for the inspection callback (inspector.py
// call_inspector): 5 attempts, waiting 1.5 s × 2^(attempt−1) clamped to
// 5–30 s between them (5, 5, 6, 12 s: 28 s in all).
var inspectRetry = retryPolicy{attempts: 5, wait: func(attempt int) time.Duration {
	d := time.Duration(1.5 * float64(time.Second) * math.Pow(2, float64(attempt-1)))
	return min(max(d, 5*time.Second), 30*time.Second)
}}

// inspect POSTs the inventory (plus the root disk and, with the "logs"
// collector, the logs) to the inspection callback, retrying as IPA does
// (sendInspection), and returns the node UUID the answer names, "" when
// none. A failure is logged and the agent carries on with lookup by MAC.
func (a *Agent) inspect(ctx context.Context, client *http.Client, inv *wire.Inventory) string {
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
	var urls []string
	for _, u := range strings.Split(a.cfg.InspectionCallbackURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	uuid, err := sendInspection(ctx, inspectionPost{client: client, urls: urls, body: body, requestID: a.cfg.RequestID,
		retry: inspectRetry, log: a.log})
	if err != nil {
		a.log.Error("inspection data not delivered; continuing with lookup by MAC", "error", err)
		return ""
	}
	return uuid
}

// inspectionPost is one delivery of inspection data.
type inspectionPost struct {
	client *http.Client
	// urls are tried in order within an attempt, the next one only when
	// the previous cannot be reached (IPA's comma-separated
	// ipa-inspection-callback-url).
	urls      []string
	body      []byte
	requestID string
	retry     retryPolicy
	log       *slog.Logger
}

// sendInspection POSTs the data until the callback accepts it and returns
// the node UUID of the answer. As IPA, a callback that cannot be reached,
// answers 409 (node locked) or a 5xx is tried again; unlike IPA, so is a
// 404: a conductor that has not yet moved the node to "inspect wait"
// (Ironic moves it there once the node's reboot has been asked for, so a
// fast agent can call while it is still "inspecting") answers "not being
// inspected", and that inspection would be lost. Other answers (400, 403,
// …) end at once. Each retry is logged; the error after the last attempt
// names how many were made and the last failure.
func sendInspection(ctx context.Context, p inspectionPost) (string, error) {
	if len(p.urls) == 0 {
		return "", errors.New("inspection: no callback URL")
	}
	for _, u := range p.urls {
		if pu, err := neturl.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return "", fmt.Errorf("inspection: callback URL %q is not an http(s) URL", u)
		}
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		uuid, url, status, err := p.once(ctx)
		if err == nil {
			p.log.Info("inspection data sent", "url", url, "node", uuid, "bytes", len(p.body), "attempts", attempt)
			return uuid, nil
		}
		retryable := status == 0 || status == http.StatusNotFound || status == http.StatusConflict || status >= 500
		switch {
		case ctx.Err() != nil:
			return "", fmt.Errorf("inspection: stopped after %d attempts: %w", attempt, context.Cause(ctx))
		case !retryable:
			return "", fmt.Errorf("inspection: refused (not retried): %w", err)
		case attempt >= p.retry.attempts:
			return "", fmt.Errorf("inspection: gave up after %d attempts in %s: %w", attempt, time.Since(start).Round(time.Millisecond), err)
		}
		wait := p.retry.wait(attempt)
		p.log.Warn("inspection callback failed; retrying", "url", url, "attempt", attempt, "of", p.retry.attempts,
			"status", status, "error", err, "retry_in", wait)
		if err := pause.For(ctx, wait); err != nil {
			return "", fmt.Errorf("inspection: stopped after %d attempts: %w", attempt, context.Cause(ctx))
		}
	}
}

// once is one attempt: each URL in turn until one answers. It returns the
// node UUID, the URL that answered (or the last tried), its status (0 when
// none answered) and the error.
func (p inspectionPost) once(ctx context.Context) (string, string, int, error) {
	var err error
	for _, url := range p.urls {
		var uuid string
		var status int
		uuid, status, err = postInspection(ctx, p.client, url, p.requestID, p.body)
		if status != 0 || err == nil || ctx.Err() != nil {
			return uuid, url, status, err
		}
		p.log.Warn("inspection callback unreachable; trying the next URL", "url", url, "error", err)
	}
	return "", p.urls[len(p.urls)-1], 0, err
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

// postInspection POSTs body to url and returns the node UUID the answer
// names and the HTTP status (0 when there was no answer).
func postInspection(ctx context.Context, client *http.Client, url, requestID string, body []byte) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", 0, fmt.Errorf("POST %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if requestID != "" {
		req.Header.Set("X-OpenStack-Request-ID", requestID)
	}
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
