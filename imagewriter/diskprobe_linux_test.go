package imagewriter

import (
	"io"

	"github.com/rivetmetal/rivet/hardware/ondisk"
)

// probeFS is what the tests read back from a written disk: the filesystem
// at off, read the way the agent reads it (hardware/ondisk).
func probeFS(r io.ReaderAt, off int64) ondisk.Filesystem {
	fs, _ := ondisk.Probe(r, off)
	return fs
}
