// Package images serves a directory of image files read-only over HTTP,
// with Range requests (http.ServeContent), so nodes can download the
// images they deploy from the conductor. Paths cannot leave the directory
// (os.Root), and directories are not listed.
package images

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
)

// Handler serves files below a directory. Mount it with http.StripPrefix.
type Handler struct {
	root *os.Root
	log  *slog.Logger
}

// New opens dir for serving.
func New(dir string, log *slog.Logger) (*Handler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("images: open %s: %w", dir, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Handler{root: root, log: log}, nil
}

// Close releases the directory.
func (h *Handler) Close() error { return h.root.Close() }

// ServeHTTP serves GET and HEAD of one file.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowGetHead(w, r) {
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		http.NotFound(w, r)
		return
	}
	f, err := h.root.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.log.Warn("image open failed", "path", name, "error", err)
		}
		http.NotFound(w, r)
		return
	}
	h.log.Debug("serving image", "path", name, "range", r.Header.Get("Range"), "remote", r.RemoteAddr)
	ServeFile(w, r, f, name)
}
