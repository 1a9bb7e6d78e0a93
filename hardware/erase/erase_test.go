package erase

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/loopdev"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// partitionedLoop makes a loop device of size bytes with a GPT of two
// partitions and an ext4 filesystem on the second (when mkfs.ext4 is
// installed), and returns it as the hardware package lists it.
func partitionedLoop(t *testing.T, size int64) (*loopdev.Device, hardware.BlockDevice) {
	t.Helper()
	loop := loopdev.New(t, size)
	d, err := diskfs.Open(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	end := uint64(size/512) - 34
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*dgpt.Partition{
		{Index: 1, Start: 2048, End: 4095, Type: dgpt.EFISystemPartition},
		{Index: 2, Start: 4096, End: end, Type: dgpt.LinuxFilesystem},
	}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// partx adds the partitions through BLKPG, whether or not this
	// kernel parses GPT itself.
	if out, err := exec.Command("partx", "-u", loop.Path).CombinedOutput(); err != nil {
		t.Fatalf("partx -u %s: %v %s", loop.Path, err, out)
	}
	// No udev here to make /dev/loopNp2: write the filesystem through the
	// whole disk at the partition's offset.
	if mkfs, err := exec.LookPath("mkfs.ext4"); err == nil {
		kib := (int64(end) - 4096 + 1) * 512 / 1024
		if out, err := exec.Command(mkfs, "-q", "-F", "-E", "offset=2097152,nodiscard", loop.Path, strconv.FormatInt(kib, 10)).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
	}
	dev, err := hardware.Lister{Allow: []string{loop.Path}}.Get(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(dev.Partitions) != 2 {
		t.Fatalf("partitions of %s: %+v", loop.Path, dev.Partitions)
	}
	return loop, dev
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMetadataOnLoopDevice(t *testing.T) {
	loop, dev := partitionedLoop(t, 64<<20)
	var last Progress
	if err := Metadata(context.Background(), dev, func(p Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.Done != last.Total || last.Total == 0 || last.Method != MethodMetadata {
		t.Errorf("last progress %+v", last)
	}
	f, _ := os.Open(loop.Path)
	defer f.Close()
	if _, err := ondisk.ReadGPT(f, dev.Size, 512); !errors.Is(err, ondisk.ErrNoGPT) {
		t.Errorf("GPT still readable (primary or backup): %v", err)
	}
	if m, _ := ondisk.ReadMBR(f); m.Valid {
		t.Error("MBR boot signature still there")
	}
	if blkid, err := exec.LookPath("blkid"); err == nil {
		for _, off := range []string{"0", "2097152"} {
			out, _ := exec.Command(blkid, "-p", "-O", off, loop.Path).CombinedOutput()
			if strings.Contains(string(out), "TYPE=") {
				t.Errorf("blkid -p -O %s %s still finds a signature: %s", off, loop.Path, out)
			}
		}
	}
	// The kernel dropped the old partitions.
	after, err := hardware.Lister{Allow: []string{loop.Path}}.Get(loop.Path)
	if err != nil || len(after.Partitions) != 0 {
		t.Errorf("partitions after the erase: %+v %v", after.Partitions, err)
	}
	// Data between the zeroed regions is untouched: this is a metadata erase.
	b := readAll(t, loop.File)
	if bytes.Count(b[2<<20:60<<20], []byte{0}) == 58<<20 && testing.Verbose() {
		t.Log("(the middle of the ext4 filesystem happened to be zeros)")
	}
}

func TestOverwriteOnLoopDevice(t *testing.T) {
	loop := loopdev.New(t, 24<<20)
	dev, err := hardware.Lister{Allow: []string{loop.Path}}.Get(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	passes := map[int]Progress{}
	progress := func(p Progress) { mu.Lock(); passes[p.Pass] = p; mu.Unlock() }

	// One random pass, no zeros: the disk reads as noise.
	start := time.Now()
	r := DeviceFunc(Settings{Iterations: 1, ATASecureErase: true, NVMeSecureErase: true}, quiet())(context.Background(), dev, progress)
	t.Logf("random pass over a %d MiB loop device: %.0f MB/s", dev.Size>>20, float64(dev.Size)/time.Since(start).Seconds()/1e6)
	if r.Err != nil || r.Method != MethodOverwrite {
		t.Fatalf("random pass: %+v", r)
	}
	b := readAll(t, loop.File)
	zeroBlocks := 0
	for off := 0; off < len(b); off += 4096 {
		if bytes.Equal(b[off:off+4096], make([]byte, 4096)) {
			zeroBlocks++
		}
	}
	if zeroBlocks != 0 {
		t.Errorf("%d all-zero 4 KiB blocks after a random pass", zeroBlocks)
	}
	if p := passes[1]; p.Done != 24<<20 || p.Total != 24<<20 || p.Passes != 1 {
		t.Errorf("progress of pass 1: %+v", p)
	}

	// Default settings: a random pass then zeros.
	r = DeviceFunc(DefaultSettings(), quiet())(context.Background(), dev, progress)
	if r.Err != nil || r.Method != MethodOverwrite {
		t.Fatalf("default erase: %+v", r)
	}
	if b := readAll(t, loop.File); !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("the disk is not all zeros after the zero pass")
	}
	if p := passes[2]; p.Done != 24<<20 || p.Passes != 2 {
		t.Errorf("progress of the zero pass: %+v", p)
	}

	// No passes asked for: skipped, with the reason.
	r = DeviceFunc(Settings{}, quiet())(context.Background(), dev, nil)
	if r.Skipped == "" || r.Err != nil {
		t.Errorf("no passes: %+v", r)
	}

	// A cancelled erase stops and says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = DeviceFunc(DefaultSettings(), quiet())(ctx, dev, nil)
	if !errors.Is(r.Err, context.Canceled) {
		t.Errorf("cancelled erase: %+v", r)
	}
}

func TestExpressOnLoopDevice(t *testing.T) {
	loop, dev := partitionedLoop(t, 32<<20)
	r := ExpressFunc(DefaultSettings(), quiet())(context.Background(), dev, nil)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	// Loop devices discard by punching holes in their file.
	if r.Method != MethodDiscard {
		t.Errorf("method %q, want %q", r.Method, MethodDiscard)
	}
	if b := readAll(t, loop.File); !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("a discarded loop device should read as zeros")
	}
}

// TestAllInParallel erases three loop devices two at a time, skips a
// read-only one and the boot medium, and reports per disk in order.
func TestAllInParallel(t *testing.T) {
	var devs []hardware.BlockDevice
	for i := 0; i < 3; i++ {
		loop := loopdev.New(t, 8<<20)
		d, err := hardware.Lister{Allow: []string{loop.Path}}.Get(loop.Path)
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	ro := devs[0]
	ro.ReadOnly = true
	boot := devs[1]
	boot.BootMedia = "virtual media"
	devs = append(devs, ro, boot)

	var running, peak atomic.Int32
	inner := DeviceFunc(DefaultSettings(), quiet())
	fn := func(ctx context.Context, d hardware.BlockDevice, p ProgressFunc) Result {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		defer running.Add(-1)
		return inner(ctx, d, p)
	}
	res := All(context.Background(), devs, 2, fn, nil, quiet())
	if len(res) != 5 {
		t.Fatalf("results %+v", res)
	}
	for i, r := range res[:3] {
		if r.Err != nil || r.Method != MethodOverwrite || r.Device != devs[i].Path {
			t.Errorf("disk %d: %+v", i, r)
		}
	}
	if !strings.Contains(res[3].Skipped, "read-only") || !strings.Contains(res[4].Skipped, "boot medium") {
		t.Errorf("skips: %+v %+v", res[3], res[4])
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d, want 2", peak.Load())
	}
	if err := Errors(res); err != nil {
		t.Errorf("Errors = %v", err)
	}
}

// TestHardwareEraseFallback drives the method choice with fake hardware
// erase methods.
func TestHardwareEraseFallback(t *testing.T) {
	loop := loopdev.New(t, 4<<20)
	dev, err := hardware.Lister{Allow: []string{loop.Path}}.Get(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer func(n, a func(context.Context, hardware.BlockDevice) (string, error)) { nvmeErase, ataErase = n, a }(nvmeErase, ataErase)
	broken := errors.New("SECURITY ERASE UNIT failed")
	cases := []struct {
		name       string
		nvme, ata  error
		settings   Settings
		wantMethod string
		wantErr    bool
	}{
		{"nvme format wins", nil, errUnsupported, DefaultSettings(), MethodNVMeCrypto, false},
		{"ata when not nvme", errUnsupported, nil, DefaultSettings(), MethodATAEnhanced, false},
		{"overwrite when neither", errUnsupported, errUnsupported, DefaultSettings(), MethodOverwrite, false},
		{"failed ata is fatal by default", errUnsupported, broken, DefaultSettings(), "", true},
		{"failed ata falls back when allowed", errUnsupported, broken,
			Settings{Iterations: 0, Zeroize: true, ATASecureErase: true, ContinueIfSecureEraseFailed: true}, MethodOverwrite, false},
		{"ata disabled by the node", errUnsupported, broken, Settings{Zeroize: true, NVMeSecureErase: true}, MethodOverwrite, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nvmeErase = func(context.Context, hardware.BlockDevice) (string, error) { return MethodNVMeCrypto, c.nvme }
			ataErase = func(context.Context, hardware.BlockDevice) (string, error) { return MethodATAEnhanced, c.ata }
			r := DeviceFunc(c.settings, quiet())(context.Background(), dev, nil)
			if (r.Err != nil) != c.wantErr || (!c.wantErr && r.Method != c.wantMethod) {
				t.Fatalf("%+v, want method %q err %v", r, c.wantMethod, c.wantErr)
			}
		})
	}
}

func TestMetadataRefusesBusyDevice(t *testing.T) {
	// A regular file stands in for a disk that cannot be opened O_EXCL:
	// the file does not exist.
	d := hardware.BlockDevice{Name: "nope", Path: filepath.Join(t.TempDir(), "nope"), Size: 1 << 20}
	if err := Metadata(context.Background(), d, nil); err == nil || !strings.Contains(err.Error(), d.Path) {
		t.Fatalf("error %v should name the device", err)
	}
}
