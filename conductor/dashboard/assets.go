package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"sync"
	"time"
)

// The page templates and the static assets: the dashboard's own script and
// style sheet (web/static), and the chart library `make dashboard` copies
// from its pinned npm package into web/static/vendor (not committed; the
// pages fall back to tables without it).
//
//go:embed web/templates web/static
var assets embed.FS

// chartAsset is the chart library's file in the static tree.
const chartAsset = "vendor/chart.umd.js"

var static = func() fs.FS {
	sub, err := fs.Sub(assets, "web/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}()

// chartAvailable reports whether the chart library was built in.
func chartAvailable() bool {
	_, err := fs.Stat(static, chartAsset)
	return err == nil
}

// staticFile is an asset with its ETag.
type staticFile struct {
	data []byte
	etag string
}

var (
	staticOnce  sync.Once
	staticFiles map[string]staticFile
)

// loadStatic reads every asset once and tags it with its content hash.
func loadStatic() map[string]staticFile {
	staticOnce.Do(func() {
		staticFiles = map[string]staticFile{}
		_ = fs.WalkDir(static, ".", func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := fs.ReadFile(static, p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			staticFiles[p] = staticFile{data: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
			return nil
		})
	})
	return staticFiles
}

// staticHandler serves the assets, revalidated by ETag.
func staticHandler() http.Handler {
	files := loadStatic()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[path.Clean(r.URL.Path)]
		if !ok || path.Ext(r.URL.Path) == ".md" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", f.etag)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(f.data))
	})
}

// pages are the parsed templates.
type pages struct{ t *template.Template }

func loadPages() (*pages, error) {
	files := loadStatic()
	t, err := template.New("").Funcs(template.FuncMap{
		// asset is an asset's URL, versioned by its content.
		"asset": func(name string) string {
			u := "/dashboard/static/" + name
			if f, ok := files[name]; ok {
				u += "?v=" + f.etag[1:9]
			}
			return u
		},
	}).ParseFS(assets, "web/templates/*.html")
	if err != nil {
		return nil, err
	}
	return &pages{t: t}, nil
}
