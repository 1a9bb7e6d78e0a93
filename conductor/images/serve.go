package images

import (
	"net/http"
	"os"
)

// ServeFile answers a GET or HEAD with the opened file f under name, with
// Range support (http.ServeContent), and closes f. Anything but a regular
// file is a 404, so a directory or a device behind a name is never sent.
func ServeFile(w http.ResponseWriter, r *http.Request, f *os.File, name string) {
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// allowGetHead answers other methods with 405 and reports whether r is a
// GET or HEAD.
func allowGetHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
