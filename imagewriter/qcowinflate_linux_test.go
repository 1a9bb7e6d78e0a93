package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/imagewriter/qcow2"
	"github.com/rivetmetal/rivet/internal/loopdev"
)

// cloudQcow2 is a disk of mixed data and zero runs (with an MBR boot
// signature when mbr is set, which a failed write must wipe), and the
// qcow2 file qemu-img makes of it with zlib-compressed clusters, as cloud
// images ship.
func cloudQcow2(t *testing.T, n int, mbr bool) (img, served []byte) {
	t.Helper()
	img = xzTestData(n)
	clear(img[n/4 : n/4+3<<20])
	if mbr {
		clear(img[446:510]) // no partitions
		copy(img[510:], []byte{0x55, 0xaa})
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(raw, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return img, qemuConvert(t, raw, "-c", "-o", "compression_type=zlib")
}

// TestWriteCompressedQcow2ToLoopDevice writes a qcow2 image whose clusters
// are zlib-compressed over a disk of old bytes, both ways it can: its map
// read with ranges, and, from a server without ranges onto a disk with no
// room to spool the file, converted as it downloads. Either way its
// clusters decode on the converter's workers, the decode stage says so,
// and every byte reads back.
func TestWriteCompressedQcow2ToLoopDevice(t *testing.T) {
	img, served := cloudQcow2(t, 24<<20+4096, false)
	for _, tc := range []struct {
		name   string
		ranges bool
		disk   int64
		path   string
	}{
		{"map read with ranges", true, 32 << 20, "tables"},
		{"converted as it downloads", false, 25 << 20, "stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loop := loopdev.New(t, tc.disk)
			fillDevice(t, loop.Path, 0x5a, int(tc.disk))
			url := serveBytes(t, served).URL
			if !tc.ranges {
				url, _ = noRangeServer(t, served, false)
			}
			var logs bytes.Buffer
			res, err := Write(context.Background(), Request{
				Source: Source{URLs: []string{url}, Retry: fastRetry}, Checksum: sha256Of(served),
				Targets: []string{loop.Path}, Verify: true, Logger: textLogger(&logs),
			})
			if err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			if res.Format != FormatQcow2 || res.ImageSize != int64(len(img)) || res.Decode == nil {
				t.Fatalf("result = %+v", res)
			}
			if got := readDevice(t, loop.Path, 0, len(img)); !bytes.Equal(got, img) {
				t.Fatal("device content differs from the image")
			}
			if !strings.Contains(logs.String(), "path="+tc.path) || regexp.MustCompile(`compressed_bytes=0\b`).MatchString(logs.String()) ||
				!regexp.MustCompile(`compressed_bytes=[1-9]`).MatchString(logs.String()) {
				t.Fatalf("the write did not take the %s path of a compressed image:\n%s", tc.path, logs.String())
			}
			if res.Decode.Threads != 1+qcow2.InflateWorkers() {
				t.Fatalf("decode stage on %d threads; want the conversion and %d workers", res.Decode.Threads, qcow2.InflateWorkers())
			}
		})
	}
}

// TestWriteCompressedQcow2BadClusterFailsTheWrite: a compressed cluster
// that does not decode, among clusters decoding on several workers, fails
// the write as a format error and leaves no disk that boots.
func TestWriteCompressedQcow2BadClusterFailsTheWrite(t *testing.T) {
	_, served := cloudQcow2(t, 16<<20, true)
	m, err := qcow2.ReadMap(context.Background(), bytes.NewReader(served), int64(len(served)), qcow2.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var compressed []qcow2.Extent
	for _, e := range m.Extents {
		if e.Compressed {
			compressed = append(compressed, e)
		}
	}
	if len(compressed) < 40 {
		t.Fatalf("only %d compressed clusters", len(compressed))
	}
	bad := bytes.Clone(served)
	e := compressed[len(compressed)*3/4]
	for i := e.Host; i < e.Host+16; i++ {
		bad[i] = 0xff // a deflate block of the reserved type
	}
	loop := loopdev.New(t, 20<<20)
	// The disk boots before the write, whatever part of the image reached
	// it before the failure.
	dev, err := os.OpenFile(loop.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt([]byte{0x55, 0xaa}, 510); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	srv := serveBytes(t, bad)
	_, err = Write(context.Background(), Request{
		Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(bad),
		Targets: []string{loop.Path}, Logger: discardLogger(),
	})
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "compressed cluster") {
		t.Fatalf("err = %v; want a format error naming the cluster", err)
	}
	if got := readDevice(t, loop.Path, 510, 2); bytes.Equal(got, []byte{0x55, 0xaa}) {
		t.Fatal("the disk kept a boot signature after a failed write")
	}
}
