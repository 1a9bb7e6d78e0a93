package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/imagewriter/layout"
	"github.com/rivetmetal/rivet/internal/hostileimage"
	"github.com/rivetmetal/rivet/internal/loopdev"
)

// rendezvous is xz workers' output that records how many of them were
// putting a block at once. A put waits (up to a minute) until two are in,
// so a decoder that ran one block at a time would show a peak of 1.
type rendezvous struct {
	img    *memImage
	mu     sync.Mutex
	active int
	peak   int
	blocks map[int]int
	both   chan struct{}
	once   sync.Once
}

type rendezvousOut struct {
	r  *rendezvous
	id int
}

func (o rendezvousOut) put(ctx context.Context, r io.Reader, off int64) (int64, error) {
	rv := o.r
	rv.mu.Lock()
	rv.active++
	rv.peak = max(rv.peak, rv.active)
	rv.blocks[o.id]++
	if rv.active == 2 {
		rv.once.Do(func() { close(rv.both) })
	}
	rv.mu.Unlock()
	select {
	case <-rv.both:
	case <-time.After(time.Minute):
	}
	n, err := rv.img.put(ctx, r, off)
	rv.mu.Lock()
	rv.active--
	rv.mu.Unlock()
	return n, err
}

// TestDecodeXzBlocksRunsBlocksConcurrently: the blocks of a threaded xz
// file decode on two workers at once, each put at its offset.
func TestDecodeXzBlocksRunsBlocksConcurrently(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	data := xzTestData(4 << 20)
	stream := xzTool(t, data, "-T2", "--block-size=512KiB")
	rv := &rendezvous{img: &memImage{max: int64(len(data))}, blocks: map[int]int{}, both: make(chan struct{})}
	n, _, err := decodeXzBlocks(context.Background(), bytes.NewReader(stream), DefaultMaxDecoderMemory, math.MaxInt64,
		[]blockOutput{rendezvousOut{rv, 0}, rendezvousOut{rv, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(rv.img.b, data) {
		t.Fatalf("decoded %d bytes (equal %v), want the %d input bytes", n, bytes.Equal(rv.img.b, data), len(data))
	}
	if rv.peak != 2 || rv.blocks[0] == 0 || rv.blocks[1] == 0 || rv.blocks[0]+rv.blocks[1] != 8 {
		t.Fatalf("peak %d blocks at once, blocks per worker %v; want 2 at once and the 8 blocks shared", rv.peak, rv.blocks)
	}
}

// TestDecodeXzBlocksMixedStreams: a file of threaded streams around a
// single-block one that declares no sizes decodes whole: the parallel
// blocks, then the streamed one alone, then parallel blocks again.
func TestDecodeXzBlocksMixedStreams(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	data := xzTestData(3 << 20)
	a, b, c := data[:1<<20], data[1<<20:2<<20+777], data[2<<20+777:]
	var s []byte
	s = append(s, xzTool(t, a, "-T2", "--block-size=200KiB")...)
	s = append(s, xzTool(t, b, "-T1", "--check=sha256")...)
	s = append(s, 0, 0, 0, 0)
	s = append(s, xzTool(t, c, "-T2", "--block-size=300000", "--check=crc32")...)
	got, err := decodeXz(s, DefaultMaxDecoderMemory, len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("decoded %d bytes (equal %v), err %v", len(got), bytes.Equal(got, data), err)
	}
	// A block too large for a worker's share of the limit is streamed:
	// with 4 MiB, each of two workers may hold 2 MiB, and the 1 MiB
	// dictionary and 1.5 MiB block do not fit it.
	big := xzTool(t, data, "-T2", "--block-size=1536KiB", "--lzma2=preset=1,dict=1MiB")
	if got, err := decodeXz(big, 4<<20, len(data)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blocks over a worker's share: %d bytes (equal %v), err %v", len(got), bytes.Equal(got, data), err)
	}
}

// TestWriteXzBlocksToLoopDevice writes a threaded xz image, its blocks
// decoded by two workers at once and written where they belong, over a
// disk of old bytes, and reads every byte back; the decode stage's CPU is
// its workers' and its own.
func TestWriteXzBlocksToLoopDevice(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	img := xzTestData(20<<20 + 4096 + 333)
	clear(img[5<<20 : 9<<20])
	served := xzTool(t, img, "-T2", "--block-size=1MiB", "-1")
	loop := loopdev.New(t, 24<<20)
	fillDevice(t, loop.Path, 0x5a, 24<<20)
	srv := serveBytes(t, served)
	res, err := Write(context.Background(), Request{
		Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(served),
		Targets: []string{loop.Path}, Verify: true, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Disks[0]
	if res.Format != FormatXz || res.ImageSize != int64(len(img)) || d.Written+d.Skipped != int64(len(img)) || d.Verified < int64(len(img)) {
		t.Fatalf("result = %+v, disk %+v; want %d image bytes written or skipped and verified", res, d, len(img))
	}
	if got := readDevice(t, loop.Path, 0, len(img)); !bytes.Equal(got, img) {
		t.Fatal("device content differs from the image")
	}
	if res.Decode == nil || (res.Decode.CPU == 0 && os.Geteuid() == 0) {
		t.Fatalf("decode stats = %+v; want the stage's CPU", res.Decode)
	}
}

// TestWriteXzBadBlockFailsTheWrite: a block whose data is corrupt, among
// blocks decoding in parallel, fails the write as a format error and
// leaves no disk that boots; the other workers stop.
func TestWriteXzBadBlockFailsTheWrite(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	img := xzTestData(8 << 20)
	copy(img[510:], []byte{0x55, 0xaa}) // an MBR signature, wiped on failure
	served := xzTool(t, img, "-T2", "--block-size=1MiB", "--check=crc64")
	bad := bytes.Clone(served)
	// A byte in the middle of the file's compressed data, in one of the
	// later blocks: its check fails, or its LZMA2 data does.
	bad[len(bad)*3/4] ^= 0x10
	loop := loopdev.New(t, 12<<20)
	srv := serveBytes(t, bad)
	_, err := Write(context.Background(), Request{
		Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(bad),
		Targets: []string{loop.Path}, Logger: discardLogger(),
	})
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v; want a format error", err)
	}
	if got := readDevice(t, loop.Path, 510, 2); bytes.Equal(got, []byte{0x55, 0xaa}) {
		t.Fatal("the disk kept a boot signature after a failed write")
	}
}

// TestDecodeXzBlocksBoundedByItsOutput: a stream of many blocks, none
// declaring its size, decoding to more than the outputs take is refused
// by them, not held in memory.
func TestDecodeXzBlocksBoundedByItsOutput(t *testing.T) {
	stream := hostileimage.XZ(bytes.Repeat([]byte{1, 2, 3}, 1<<20), 18, 64<<10)
	if got, err := decodeXz(stream, DefaultMaxDecoderMemory, 1<<20); err == nil || len(got) > 1<<20 {
		t.Fatalf("3 MiB of output under a 1 MiB output cap: %d bytes, err %v", len(got), err)
	}
}

// TestDecompressXzHoldsBlocksUntilTheHeadIsChecked: the stage checks the
// image's first bytes before any chunk reaches a disk, and when it refuses
// them, no block another worker decoded meanwhile gets there either. (The
// write's precheck refuses such an image from the served probe first; this
// is the stage's own check, behind it.) The image's first block is large
// and the rest small, so the later blocks are decoded well before the
// first one's first chunk is.
func TestDecompressXzHoldsBlocksUntilTheHeadIsChecked(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	img := xzTestData(6 << 20)
	copy(img, "QFI\xfb\x00\x00\x00\x03") // a qcow2 header's magic and version
	served := xzTool(t, img, "-T2", "--block-list=4MiB,64KiB")
	w := &writer{req: Request{MaxDecoderMemory: DefaultMaxDecoderMemory}}
	in, stop := feedChunks(context.Background(), bytes.NewReader(served), xzInput, inputChunk)
	defer func() { _ = stop() }()
	defer in.close()
	sink := make(chan *chunk, 256)
	em := &emitter{ctx: context.Background(), pool: newBufferPool(xzWorkers(DefaultMaxDecoderMemory)+2, xzOutputChunk), outs: []chan *chunk{sink}}
	_, _, err := w.decompressXz(context.Background(), in, em)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "qcow2 image inside") {
		t.Fatalf("err = %v; want the qcow2 image refused", err)
	}
	if len(sink) != 0 {
		c := <-sink
		t.Fatalf("%d chunks reached the disk, the first at offset %d", len(sink)+1, c.off)
	}
}

// TestDecodeXzBlocksKeepsEveryWorkerWithinItsShare: a block that does not
// declare its size decodes streamed, with a 64 MiB dictionary (half the
// decoder memory limit); sized blocks follow, on four workers whose share
// is 32 MiB each. The worker that kept the large dictionary lets go of it
// before any block decodes in parallel: no worker ever holds more than
// its share (dictionary and block buffer) while others decode.
func TestDecodeXzBlocksKeepsEveryWorkerWithinItsShare(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	data := xzTestData(3 << 20)
	stream := xzTool(t, data[:1<<20], "-T1", "--lzma2=preset=6,dict=64MiB")
	stream = append(stream, xzTool(t, data[1<<20:], "-T2", "--block-size=256KiB")...)
	var dispatched int
	var over []string
	xzDispatchHook = func(d *xzDispatcher) {
		dispatched++
		for k := range d.dicts {
			if held := d.dicts[k] + int64(d.bufs[k].capacity()); held > d.share {
				over = append(over, fmt.Sprintf("worker %d holds %d bytes at dispatch %d", k, held, dispatched))
			}
		}
	}
	defer func() { xzDispatchHook = nil }()
	img := &memImage{max: int64(len(data))}
	n, _, err := decodeXzBlocks(context.Background(), bytes.NewReader(stream), DefaultMaxDecoderMemory, math.MaxInt64,
		[]blockOutput{img, img, img, img})
	if err != nil || n != int64(len(data)) || !bytes.Equal(img.b, data) {
		t.Fatalf("decoded %d bytes, %v (equal %v)", n, err, bytes.Equal(img.b, data))
	}
	if dispatched < 8 || len(over) > 0 {
		t.Fatalf("%d blocks in parallel; over the 32 MiB share: %v", dispatched, over)
	}
}

// TestWriteXzBlockLyingAboutItsSizeFailsAsCorrupt: the first block of a
// threaded-style xz image claims, in its framing, 128 MiB more than it
// holds, so the block after it would land beyond the end of the 32 MiB
// disk. That block waits for the first, which fails as it decodes: the
// write fails as a format error, not as an image too large for the disk.
func TestWriteXzBlockLyingAboutItsSizeFailsAsCorrupt(t *testing.T) {
	img := xzTestData(24<<20 + 64<<10)
	served := hostileimage.XZClaiming(img, 18, 24<<20, 64)
	loop := loopdev.New(t, 32<<20)
	srv := serveBytes(t, served)
	_, err := Write(context.Background(), Request{
		Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(served),
		Targets: []string{loop.Path}, Logger: discardLogger(),
	})
	if !errors.Is(err, ErrFormat) || errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v; want a format error, not too large", err)
	}
}

// TestWriteXzBadBlockStopsTheDownload: a block fails its check while the
// server has stopped sending in the middle of the next one. The worker's
// failure ends the read of that block at once, and the write fails as a
// format error (the image's fault), not as a stalled or truncated
// download.
func TestWriteXzBadBlockStopsTheDownload(t *testing.T) {
	data := xzTestData(2 << 20)
	served := hostileimage.XZClaiming(data, 18, 1<<20, 0) // two sized blocks of 1 MiB, stored
	first := len(served) - 300_000                        // inside the second block
	bad := bytes.Clone(served)
	bad[100_000] ^= 0x01 // a byte of the first block's data: its CRC-32 fails
	release := make(chan struct{})
	defer close(release)
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
		w.Write(bad[:first])
		w.(http.Flusher).Flush()
		select { // then nothing more, until the test or the client gives up
		case <-release:
		case <-r.Context().Done():
		}
	}))
	loop := loopdev.New(t, 4<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := Write(ctx, Request{
		Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(bad),
		Targets: []string{loop.Path}, Logger: discardLogger(),
	})
	if !errors.Is(err, ErrFormat) || ctx.Err() != nil {
		t.Fatalf("err = %v (test context: %v); want a format error while the download stalls", err, ctx.Err())
	}
}

// TestWriteXzGPTImageWithASmallFirstBlock: a GPT disk image compressed
// with a first block of 512 bytes is allowed where only "gpt" is
// permitted: the decode stage judges the image's head on the bytes the
// precheck decoded, not on the first block alone (a GPT header lies
// beyond byte 512).
func TestWriteXzGPTImageWithASmallFirstBlock(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	_, img := diskImageFile(t, layout.GPT, 8*mib)
	served := xzTool(t, img, "-T2", "--block-list=512,64KiB,1MiB")
	loop := loopdev.New(t, 8*mib)
	srv := serveBytes(t, served)
	_, err := Write(context.Background(), Request{
		Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(served),
		Targets: []string{loop.Path}, PermittedFormats: []string{"gpt"}, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := readDevice(t, loop.Path, 0, len(img)); !bytes.Equal(got, img) {
		t.Fatal("device content differs from the image")
	}
}
