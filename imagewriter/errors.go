package imagewriter

import "errors"

// Error classes. Every error Write returns wraps exactly one of these, so
// the agent can report the right error type to the conductor.
var (
	// ErrDownload: the image could not be fetched (HTTP status, connection
	// failure, every URL tried).
	ErrDownload = errors.New("image download failed")
	// ErrTruncated: the source ended before the image did.
	ErrTruncated = errors.New("image truncated")
	// ErrChecksum: the checksum of the bytes served differs from the
	// expected one, or no usable checksum was given.
	ErrChecksum = errors.New("image checksum error")
	// ErrTooLarge: the image does not fit the target device.
	ErrTooLarge = errors.New("image larger than the target device")
	// ErrTarget: the target device could not be opened, written or flushed.
	ErrTarget = errors.New("target device error")
)
