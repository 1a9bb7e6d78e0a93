package imagewriter

import "time"

// Phases of a write, as reported in Progress.Phase and Result.Timings.
// Download, decode and write are concurrent stages: their timings are the
// span of each stage and overlap; the others run one after the other.
const (
	PhasePrepare  = "prepare"
	PhaseConnect  = "connect"
	PhaseDownload = "download"
	PhaseDecode   = "decode"
	PhaseWrite    = "write"
	PhaseFlush    = "flush"
	// PhaseConvert converts a qcow2 file spooled onto the target (for
	// servers without Range support) into the disk image.
	PhaseConvert     = "convert"
	PhaseVerify      = "verify"
	PhaseConfigdrive = "configdrive"
	PhaseFinalize    = "finalize"
	PhaseDone        = "done"
)

// Progress is a snapshot of a running write.
type Progress struct {
	Phase string
	// BytesRead counts bytes received from the source (as served).
	BytesRead int64
	// BytesDecoded counts disk bytes produced by the decode stage (equal to
	// BytesRead for raw images).
	BytesDecoded int64
	// BytesWritten counts bytes written to the slowest target.
	BytesWritten int64
	// BytesSkipped counts zero bytes not written (zeroed by the device)
	// on the slowest target.
	BytesSkipped int64
	// TotalBytes is the size of the image as served, 0 when the source
	// did not say.
	TotalBytes int64
	// ImageSize is the size of the disk image once known (the virtual
	// size of a qcow2 image), else 0.
	ImageSize int64
	StartedAt time.Time
	UpdatedAt time.Time
	// Timings holds the durations of the phases that have ended.
	Timings map[string]time.Duration
}

// Rate is the average rate at which the image reaches the disk (written
// plus skipped bytes) in bytes per second.
func (p Progress) Rate() float64 {
	d := p.UpdatedAt.Sub(p.StartedAt).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(p.BytesWritten+p.BytesSkipped) / d
}

// ETA estimates the time left from the share of the served bytes read so
// far, or -1 when the total is unknown or nothing was read yet.
func (p Progress) ETA() time.Duration {
	if p.TotalBytes <= 0 || p.BytesRead <= 0 {
		return -1
	}
	elapsed := p.UpdatedAt.Sub(p.StartedAt)
	left := max(p.TotalBytes-p.BytesRead, 0)
	return time.Duration(float64(elapsed) * float64(left) / float64(p.BytesRead))
}
