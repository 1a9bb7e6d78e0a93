package loopdev

import (
	"os"
	"path/filepath"
	"testing"
)

func TestAttachDirectIO(t *testing.T) {
	SkipIfUnavailable(t)
	file := filepath.Join(t.TempDir(), "disk.img")
	for _, direct := range []bool{false, true} {
		d, err := AttachWith(file, 8<<20, Options{DirectIO: direct})
		if err != nil {
			t.Fatal(err)
		}
		on, err := d.DirectIO()
		if derr := d.Detach(); derr != nil {
			t.Error(derr)
		}
		if err != nil {
			t.Fatal(err)
		}
		if on != direct {
			t.Errorf("asked for direct I/O %v, the loop driver has %v", direct, on)
		}
		if fi, err := os.Stat(file); err != nil || fi.Size() != 8<<20 {
			t.Errorf("backing file: %v, %v", fi, err)
		}
	}
}
