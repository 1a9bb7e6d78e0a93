package netboot

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/netboot/internal/bootfiles"
)

// Firmware serves the iPXE binaries of one directory over HTTP, read-only
// and confined to the directory (the same rules as TFTP): GET and HEAD of
// /{file} only.
type Firmware struct {
	files *bootfiles.Dir
	log   *slog.Logger
}

// NewFirmware opens dir for serving.
func NewFirmware(dir string, log *slog.Logger) (*Firmware, error) {
	if log == nil {
		log = slog.Default()
	}
	files, err := bootfiles.Open(dir)
	if err != nil {
		return nil, err
	}
	return &Firmware{files: files, log: log}, nil
}

// ServeHTTP implements http.Handler.
func (f *Firmware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	fh, err := f.files.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		f.log.Warn("firmware request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	f.log.Info("serving boot firmware over HTTP", "file", name, "remote", r.RemoteAddr)
	images.ServeFile(w, r, fh, name)
}

// Close closes the directory.
func (f *Firmware) Close() { f.files.Close() }
