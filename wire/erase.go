package wire

// DiskProgress is the live state of one disk in a multi-disk command
// (erase_devices, erase_devices_metadata, erase_devices_express). It is
// carried in ProgressResult.Disks while the command runs.
type DiskProgress struct {
	// Device is the disk, e.g. "/dev/sda".
	Device string `json:"device"`
	// Method is how the disk is being erased ("overwrite",
	// "nvme-format-crypto-erase", "metadata", …).
	Method string `json:"method,omitempty"`
	// State is "pending", "running", "done", "skipped" or "failed".
	State string `json:"state"`
	// Pass is the current pass of Passes (overwrites), else 0.
	Pass   int `json:"pass,omitempty"`
	Passes int `json:"passes,omitempty"`
	// BytesDone and TotalBytes count the current pass.
	BytesDone  int64 `json:"bytes_done"`
	TotalBytes int64 `json:"total_bytes"`
	// RateBytesPerSec is the average rate of the current disk.
	RateBytesPerSec float64 `json:"rate_bytes_per_sec"`
	// Message says why a disk was skipped or how it failed.
	Message string `json:"message,omitempty"`
}

// EraseResult is the per-disk outcome of an erase step, keyed by device in
// the step's result.
type EraseResult struct {
	Method  string  `json:"method,omitempty"`
	Skipped string  `json:"skipped,omitempty"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}
