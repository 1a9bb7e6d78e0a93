package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

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
	n, _, err := decodeXzBlocks(context.Background(), bytes.NewReader(stream), DefaultMaxDecoderMemory,
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
