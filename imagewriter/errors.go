package imagewriter

import (
	"errors"

	"github.com/rivetmetal/rivet/imagewriter/source"
)

// Error classes. Every error Write returns wraps exactly one of these, so
// the agent can report the right error type to the conductor.
var (
	// ErrDownload: the image could not be fetched (HTTP status, connection
	// failure, every URL and retry tried).
	ErrDownload = source.ErrDownload
	// ErrTruncated: the source ended before the image did, and resuming
	// did not bring the rest.
	ErrTruncated = source.ErrTruncated
	// ErrChecksum: the checksum of the bytes served differs from the
	// expected one, or no usable checksum was given.
	ErrChecksum = errors.New("image checksum error")
	// ErrFormat: the image's format (found from its magic bytes) is not
	// permitted, differs from the declared disk_format, is malformed, or
	// uses a feature that cannot be written safely (e.g. a qcow2 backing
	// file).
	ErrFormat = errors.New("image format error")
	// ErrTooLarge: the image does not fit the target device (or its root
	// partition).
	ErrTooLarge = errors.New("image larger than the target device")
	// ErrTarget: the target device could not be opened, written, read
	// back or flushed, or its partitions could not be made.
	ErrTarget = errors.New("target device error")
	// ErrConfigdrive: the config drive could not be decoded, fetched or
	// placed.
	ErrConfigdrive = errors.New("config drive error")
)

// ErrMemoryLimit is a detail, wrapped together with ErrFormat, of an image
// refused because decoding it would take more memory than
// Request.MaxDecoderMemory: an xz dictionary or index, a zstd window, or
// qcow2 tables over the limit.
var ErrMemoryLimit = errors.New("image needs more decoder memory than allowed")
