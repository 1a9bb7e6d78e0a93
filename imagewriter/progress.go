package imagewriter

import "time"

// Phases of a write, as reported in Progress.Phase and Result.Timings.
const (
	PhaseConnect  = "connect"
	PhaseDownload = "download"
	PhaseWrite    = "write"
	PhaseFlush    = "flush"
	PhaseVerify   = "verify"
	PhaseDone     = "done"
)

// Progress is a snapshot of a running write.
type Progress struct {
	Phase string
	// BytesRead counts bytes received from the source.
	BytesRead int64
	// BytesWritten counts bytes on the slowest target.
	BytesWritten int64
	// BytesSkipped counts zero bytes not written because the target already
	// reads as zeros.
	BytesSkipped int64
	// TotalBytes is the image size, 0 when the source did not say.
	TotalBytes int64
	StartedAt  time.Time
	UpdatedAt  time.Time
	// Timings holds the durations of the phases that have ended.
	Timings map[string]time.Duration
}

// Rate is the average write rate in bytes per second.
func (p Progress) Rate() float64 {
	d := p.UpdatedAt.Sub(p.StartedAt).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(p.BytesWritten+p.BytesSkipped) / d
}

// ETA estimates the time left, or -1 when the total is unknown or nothing
// has been written yet.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if p.TotalBytes <= 0 || r <= 0 {
		return -1
	}
	left := p.TotalBytes - p.BytesWritten - p.BytesSkipped
	if left < 0 {
		left = 0
	}
	return time.Duration(float64(left) / r * float64(time.Second))
}
