package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// failureStates end a wait with an error.
var failureStates = map[string]bool{"deploy failed": true, "clean failed": true,
	"inspect failed": true, "rescue failed": true, "unrescue failed": true,
	"adopt failed": true, "service failed": true, "error": true}

// waitFor polls the node until it reaches target, printing each provision
// state change and the image write progress. A failure state, or a stable
// state other than target, is an error carrying the node's last_error.
func (e *env) waitFor(ctx context.Context, ident, target string, timeout time.Duration) error {
	c, err := e.api()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastState, lastProgress string
	seen := map[string]bool{}
	started := time.Now()
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	for {
		n, err := c.GetNode(ctx, ident)
		if err != nil {
			if ctx.Err() != nil {
				return exitf(ExitTimeout, "%s: timed out after %s waiting for %s (last seen: %s)", ident, timeout, target, dash(lastState))
			}
			return fmt.Errorf("wait for %s: %w", ident, err)
		}
		deploying := n.TargetProvisionState == "active" || (target == "active" && n.ProvisionState == "active")
		if p := n.Progress(); p != nil && deploying {
			if s := formatProgress(p); s != lastProgress {
				e.statusf("%s: image %s", n.Label(), s)
				lastProgress = s
			}
		}
		switch {
		case n.ProvisionState == target && n.TargetProvisionState == "":
			e.statusf("%s: %s after %s", n.Label(), target, time.Since(started).Round(time.Second))
			return nil
		case failureStates[n.ProvisionState]:
			return exitf(ExitNodeFailed, "%s: %s: %s", n.Label(), n.ProvisionState, dash(n.LastError))
		case n.TargetProvisionState == "" && n.ProvisionState != target:
			return exitf(ExitNodeFailed, "%s: settled in %s, not %s (last error: %s)", n.Label(), n.ProvisionState, target, dash(n.LastError))
		}
		// Each state once: a deploy goes back and forth between deploying
		// and wait call-back on every heartbeat.
		state := n.ProvisionState + " (target " + n.TargetProvisionState + ")"
		if !seen[state] {
			e.statusf("%s: %s", n.Label(), state)
			seen[state] = true
		}
		lastState = state
		select {
		case <-ctx.Done():
			return exitf(ExitTimeout, "%s: timed out after %s waiting for %s (now %s)", n.Label(), timeout, target, state)
		case <-tick.C:
		}
	}
}

// formatProgress renders write progress: image bytes read of the total,
// bytes written and zero bytes skipped (a sparse image writes far less than
// it reads), rate, ETA.
func formatProgress(p *wire.Progress) string {
	s := fmt.Sprintf("%s %s", p.Phase, bytesIEC(p.BytesRead))
	if p.TotalBytes > 0 {
		s += fmt.Sprintf(" of %s (%.0f%%)", bytesIEC(p.TotalBytes), 100*progressFraction(p))
	}
	if p.BytesWritten != p.BytesRead || p.BytesSkipped > 0 {
		s += fmt.Sprintf(", %s written", bytesIEC(p.BytesWritten))
	}
	if p.BytesSkipped > 0 {
		s += fmt.Sprintf(", %s zeros skipped", bytesIEC(p.BytesSkipped))
	}
	if p.RateBytesPerSec > 0 {
		s += fmt.Sprintf(", %s/s", bytesIEC(int64(p.RateBytesPerSec)))
	}
	if p.ETASeconds >= 0.5 {
		s += fmt.Sprintf(", ETA %s", (time.Duration(p.ETASeconds * float64(time.Second))).Round(time.Second))
	}
	return s
}

// progressFraction is how far through the image (as served) a write is,
// between 0 and 1; 0 when the size is unknown.
func progressFraction(p *wire.Progress) float64 {
	if p.TotalBytes <= 0 {
		return 0
	}
	return max(0, min(1, float64(p.BytesRead)/float64(p.TotalBytes)))
}

// bytesIEC formats a byte count with binary units ("512.0 MiB").
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
