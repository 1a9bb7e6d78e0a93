// Package xzlimit walks xz framing without decoding it (stream headers,
// block headers, LZMA2 chunk headers, the index and the footer, as in the
// .xz file format 1.2.1), bounding the memory an xz decoder may be asked
// for.
//
// Its Reader sits between the image stream and the decoder: it hands a
// block header to the decoder only after checking that its LZMA2
// dictionary fits the limit, and stops a stream whose index (one record
// per block, kept by the decoder) would outgrow it. Data is passed through
// untouched; checksums and everything else are left to the decoder.
//
// Its Splitter cuts a file into its blocks, with the same limits, so they
// can be decoded apart and at once: each block as an xz stream of its own,
// whose decoder checks its data, its check and its sizes, while the
// Splitter checks the file's indexes and footers against the blocks.
package xzlimit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Errors. A stream refused for its size wraps ErrLimit; one whose framing
// cannot be walked wraps ErrCorrupt.
var (
	// ErrLimit: the stream needs more decoder memory than allowed.
	ErrLimit = errors.New("xz stream needs more decoder memory than allowed")
	// ErrCorrupt: the framing is not valid xz.
	ErrCorrupt = errors.New("corrupt xz framing")
)

// Format constants.
const (
	headerMagic     = "\xfd7zXZ\x00"
	footerMagic     = "YZ"
	streamHeaderLen = 12
	footerLen       = 12
	filterLZMA2     = 0x21
	maxFilters      = 4
	// indexRecordCost is what a decoder keeps per block (two int64 and
	// slice growth).
	indexRecordCost = 32
	// maxVLI is the largest value of an xz multibyte integer.
	maxVLI = 1<<63 - 1
)

// DictSize decodes the LZMA2 dictionary-size property byte: bits 0–5
// select 2 or 3 times a power of two, 40 means 4 GiB − 1.
func DictSize(b byte) (int64, error) {
	switch {
	case b > 40:
		return 0, fmt.Errorf("%w: LZMA2 dictionary property %d", ErrCorrupt, b)
	case b == 40:
		return 1<<32 - 1, nil
	}
	return int64(2|b&1) << (b/2 + 11), nil
}

// checkSizes are the sizes of the block check field by check type.
var checkSizes = [16]int{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}

type state int

const (
	stStreamHeader state = iota // next: a stream header
	stBlockOrIndex              // next: a block header or the index
	stChunk                     // next: an LZMA2 chunk control byte
	stBlockEnd                  // next: block padding and check
	stIndex                     // next: the index body after its indicator
	stFooter                    // next: the stream footer
	stPadding                   // next: stream padding, a new stream, or the end
	stDone
)

// Reader passes an xz stream through, refusing it as soon as the framing
// asks for more memory than allowed. It is not safe for concurrent use.
type Reader struct {
	passer
	maxDict int64
	maxRecs int64

	st      state
	check   int   // check field size of the current stream
	blocks  int64 // blocks in the current stream
	blockN  int64 // bytes of the current block so far (header + data)
	buf     [1024]byte
	maxSeen int64
}

// NewReader returns a Reader over r that refuses an LZMA2 dictionary of
// more than half of maxMemory bytes, and an index whose records would take
// more than maxMemory. Half, so that a decoder that holds two dictionaries
// at once (one that allocates a new one per block while the last is not
// yet collected) stays within the limit too; the decoder Rivet uses keeps
// one.
func NewReader(r io.Reader, maxMemory int64) *Reader {
	return &Reader{passer: passer{r: r}, maxDict: maxMemory, maxRecs: max(maxMemory/indexRecordCost, 1)}
}

// MaxDictionary is the largest LZMA2 dictionary seen so far.
func (x *Reader) MaxDictionary() int64 { return x.maxSeen }

// Read hands out the next bytes of the stream once the framing before them
// has been checked.
func (x *Reader) Read(p []byte) (int, error) { return x.read(p, x.step) }

// passer is the read loop the Reader and a Block share: it hands out the
// framing bytes queued in out, then passes pass data bytes of r through,
// then has step examine the next framing element. An error is kept.
type passer struct {
	r    io.Reader
	out  []byte
	pass int64
	err  error
}

func (x *passer) read(p []byte, step func() error) (int, error) {
	for {
		if len(x.out) > 0 {
			n := copy(p, x.out)
			x.out = x.out[n:]
			return n, nil
		}
		if x.err != nil {
			return 0, x.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if x.pass > 0 {
			n, err := x.r.Read(p[:min(int64(len(p)), x.pass)])
			x.pass -= int64(n)
			if err == io.EOF && x.pass > 0 {
				err = io.ErrUnexpectedEOF
			}
			if err != nil && err != io.EOF {
				x.err = err
			}
			if n > 0 || x.err != nil {
				return n, x.err
			}
			continue
		}
		if err := step(); err != nil {
			x.err = err
		}
	}
}

// fill reads exactly n framing bytes into the buffer; the end of the input
// there is ErrUnexpectedEOF.
func (x *Reader) fill(n int) ([]byte, error) { return readFull(x.r, x.buf[:n]) }

// readFull fills b from r; the end of the input before b is full, even
// before its first byte, is ErrUnexpectedEOF.
func readFull(r io.Reader, b []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// emit queues checked framing bytes for the decoder.
func (x *Reader) emit(b []byte) { x.out = append(x.out[:0], b...) }

// step examines the next framing element.
func (x *Reader) step() error {
	switch x.st {
	case stStreamHeader:
		b, err := x.fill(streamHeaderLen)
		if err != nil {
			return err
		}
		return x.streamHeader(b)
	case stBlockOrIndex:
		b, err := x.fill(1)
		if err != nil {
			return err
		}
		if b[0] == 0 {
			x.emit(b)
			x.st = stIndex
			return nil
		}
		return x.blockHeader(b[0])
	case stChunk:
		return x.chunk()
	case stBlockEnd:
		n := int((4-x.blockN%4)%4) + x.check
		b, err := x.fill(n)
		if err != nil {
			return err
		}
		x.emit(b)
		x.st = stBlockOrIndex
		return nil
	case stIndex:
		return x.index()
	case stFooter:
		b, err := x.fill(footerLen)
		if err != nil {
			return err
		}
		if string(b[10:12]) != footerMagic {
			return fmt.Errorf("%w: bad stream footer magic", ErrCorrupt)
		}
		x.emit(b)
		x.st = stPadding
		return nil
	case stPadding:
		b := x.buf[:4]
		n, err := io.ReadFull(x.r, b)
		switch {
		case n == 0 && err == io.EOF:
			x.st = stDone
			return io.EOF
		case err == io.ErrUnexpectedEOF:
			return fmt.Errorf("%w: %d stray bytes after the stream", ErrCorrupt, n)
		case err != nil:
			return err
		case binary.LittleEndian.Uint32(b) == 0:
			x.emit(b)
			return nil
		}
		rest, err := io.ReadFull(x.r, x.buf[4:streamHeaderLen])
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: %d bytes of a stream header: %w", ErrCorrupt, 4+rest, err)
		}
		return x.streamHeader(x.buf[:streamHeaderLen])
	case stDone:
		return io.EOF
	}
	return fmt.Errorf("xzlimit: bad state %d", x.st)
}

func (x *Reader) streamHeader(b []byte) error {
	check, err := parseStreamHeader(b)
	if err != nil {
		return err
	}
	x.check = check
	x.blocks = 0
	x.emit(b)
	x.st = stBlockOrIndex
	return nil
}

// parseStreamHeader checks a 12-byte stream header and returns the size of
// its streams' block check field.
func parseStreamHeader(b []byte) (check int, err error) {
	if string(b[:6]) != headerMagic {
		return 0, fmt.Errorf("%w: bad stream header magic", ErrCorrupt)
	}
	if b[6] != 0 || b[7]&0xf0 != 0 {
		return 0, fmt.Errorf("%w: unsupported stream flags %#x %#x", ErrCorrupt, b[6], b[7])
	}
	if crc32.ChecksumIEEE(b[6:8]) != binary.LittleEndian.Uint32(b[8:12]) {
		return 0, fmt.Errorf("%w: stream header CRC mismatch", ErrCorrupt)
	}
	return checkSizes[b[7]&0x0f], nil
}

// blockHeader reads the rest of a block header whose size byte is first,
// checks the LZMA2 dictionary, and only then queues the header.
func (x *Reader) blockHeader(first byte) error {
	h, err := readBlockHeader(x.r, first, x.buf[:])
	if err != nil {
		return err
	}
	bh, err := parseBlockHeader(h, x.maxDict)
	x.maxSeen = max(x.maxSeen, bh.dict)
	if err != nil {
		return err
	}
	x.blocks++
	if x.blocks > x.maxRecs {
		return &LimitError{What: "index of more than " + fmt.Sprint(x.maxRecs) + " blocks", Need: x.blocks * indexRecordCost, Max: x.maxDict}
	}
	x.blockN = int64(len(h))
	x.emit(h)
	x.st = stChunk
	return nil
}

// readBlockHeader reads the rest of a block header whose size byte is
// first into buf (at least 1024 bytes) and returns the whole header.
func readBlockHeader(r io.Reader, first byte, buf []byte) ([]byte, error) {
	size := (int(first) + 1) * 4
	buf[0] = first
	if _, err := readFull(r, buf[1:size]); err != nil {
		return nil, err
	}
	return buf[:size], nil
}

// blockHeader is what a block header says. A size it leaves out is -1.
type blockHeader struct {
	compressed, uncompressed int64
	dict                     int64
}

// parseBlockHeader checks a block header h (CRC, flags, a filter chain
// ending in LZMA2) and its LZMA2 dictionary against the limit: a decoder
// may hold two dictionaries, so each may take half of maxMemory.
func parseBlockHeader(h []byte, maxMemory int64) (blockHeader, error) {
	bh := blockHeader{compressed: -1, uncompressed: -1}
	size := len(h)
	if crc32.ChecksumIEEE(h[:size-4]) != binary.LittleEndian.Uint32(h[size-4:]) {
		return bh, fmt.Errorf("%w: block header CRC mismatch", ErrCorrupt)
	}
	flags := h[1]
	if flags&0x3c != 0 {
		return bh, fmt.Errorf("%w: reserved block flags %#x", ErrCorrupt, flags)
	}
	p := h[2 : size-4]
	var err error
	var v uint64
	if flags&0x40 != 0 {
		if v, p, err = uvarint(p); err != nil {
			return bh, err
		}
		if v == 0 || v > maxVLI {
			return bh, fmt.Errorf("%w: a block header declares %d compressed bytes", ErrCorrupt, v)
		}
		bh.compressed = int64(v)
	}
	if flags&0x80 != 0 {
		if v, p, err = uvarint(p); err != nil {
			return bh, err
		}
		if v > maxVLI {
			return bh, fmt.Errorf("%w: a block header declares %d uncompressed bytes", ErrCorrupt, v)
		}
		bh.uncompressed = int64(v)
	}
	nf := int(flags&3) + 1
	var lastID uint64
	var props []byte
	for i := 0; i < nf && i < maxFilters; i++ {
		if lastID, p, err = uvarint(p); err != nil {
			return bh, err
		}
		var n uint64
		if n, p, err = uvarint(p); err != nil {
			return bh, err
		}
		if n > uint64(len(p)) {
			return bh, fmt.Errorf("%w: filter properties run past the block header", ErrCorrupt)
		}
		props, p = p[:n], p[n:]
	}
	if lastID != filterLZMA2 || len(props) != 1 {
		return bh, fmt.Errorf("%w: the last filter of a block is %#x, not LZMA2", ErrCorrupt, lastID)
	}
	if bh.dict, err = DictSize(props[0]); err != nil {
		return bh, err
	}
	if 2*bh.dict > maxMemory {
		return bh, &LimitError{What: fmt.Sprintf("an LZMA2 dictionary of %d MiB (the decoder may hold two)", ceilMiB(bh.dict)), Need: 2 * bh.dict, Max: maxMemory}
	}
	return bh, nil
}

// chunk reads an LZMA2 chunk header, queues it and arranges for its data
// to be passed through.
func (x *Reader) chunk() error {
	c, err := readChunkHeader(x.fill)
	if err != nil {
		return err
	}
	x.blockN += int64(len(c.framing)) + c.pass
	x.pass = c.pass
	x.emit(c.framing)
	if c.end {
		x.st = stBlockEnd
	}
	return nil
}

// lzma2Chunk is an LZMA2 chunk's header as a walker sees it.
type lzma2Chunk struct {
	// framing is the header, and for an LZMA chunk the first byte of its
	// range coder data; pass is the data bytes after it.
	framing []byte
	pass    int64
	// size is the bytes the chunk decodes to.
	size int64
	// end marks the end of the block's LZMA2 data (control byte 0).
	end bool
}

// readChunkHeader reads the next LZMA2 chunk header with fill (which
// returns exactly n bytes, valid until its next call).
func readChunkHeader(fill func(n int) ([]byte, error)) (lzma2Chunk, error) {
	b, err := fill(1)
	if err != nil {
		return lzma2Chunk{}, err
	}
	c := b[0]
	switch {
	case c == 0:
		return lzma2Chunk{framing: []byte{0}, end: true}, nil
	case c == 1 || c == 2:
		h, err := fill(2)
		if err != nil {
			return lzma2Chunk{}, err
		}
		n := int64(binary.BigEndian.Uint16(h)) + 1
		return lzma2Chunk{framing: append([]byte{c}, h...), pass: n, size: n}, nil
	case c < 0x80:
		return lzma2Chunk{}, fmt.Errorf("%w: LZMA2 control byte %#x", ErrCorrupt, c)
	}
	n := 4
	if (c>>5)&3 >= 2 {
		n = 5 // a new properties byte follows the sizes
	}
	// The header and the first byte of the chunk's range coder data,
	// which is always zero (liblzma refuses any other; a decoder that
	// shifts it out unread would let a corrupt byte pass unnoticed).
	h, err := fill(n + 1)
	if err != nil {
		return lzma2Chunk{}, err
	}
	if h[n] != 0 {
		return lzma2Chunk{}, fmt.Errorf("%w: LZMA2 chunk whose range coder data starts with %#x, not 0", ErrCorrupt, h[n])
	}
	size := int64(c&0x1f)<<16 + int64(binary.BigEndian.Uint16(h[0:2])) + 1
	return lzma2Chunk{framing: append([]byte{c}, h...), pass: int64(binary.BigEndian.Uint16(h[2:4])), size: size}, nil
}

// index passes the index body through record by record, then the
// padding and CRC, keeping nothing.
func (x *Reader) index() error {
	total := int64(1) // the indicator
	readVarint := func() (uint64, error) {
		return readVLI(x.fill, func(b byte) {
			x.out = append(x.out, b)
			total++
		})
	}
	x.out = x.out[:0]
	count, err := readVarint()
	if err != nil {
		return err
	}
	if count != uint64(x.blocks) {
		return fmt.Errorf("%w: index lists %d blocks, the stream has %d", ErrCorrupt, count, x.blocks)
	}
	for range 2 * count {
		if _, err := readVarint(); err != nil {
			return err
		}
	}
	pad := int((4 - total%4) % 4)
	b, err := x.fill(pad + 4)
	if err != nil {
		return err
	}
	x.out = append(x.out, b...)
	x.st = stFooter
	return nil
}

// readVLI reads an xz multibyte integer byte by byte with fill, handing
// each byte to seen.
func readVLI(fill func(n int) ([]byte, error), seen func(byte)) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, err := fill(1)
		if err != nil {
			return 0, err
		}
		seen(b[0])
		v |= uint64(b[0]&0x7f) << (7 * i)
		if b[0] < 0x80 {
			if b[0] == 0 && i > 0 {
				return 0, fmt.Errorf("%w: index integer with a trailing zero byte", ErrCorrupt)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: index integer too long", ErrCorrupt)
}

// uvarint decodes an xz multibyte integer from the front of p.
func uvarint(p []byte) (uint64, []byte, error) {
	var v uint64
	for i := 0; i < len(p) && i < 9; i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i] < 0x80 {
			return v, p[i+1:], nil
		}
	}
	return 0, nil, fmt.Errorf("%w: bad varint in a block header", ErrCorrupt)
}

// LimitError says what needed more memory than allowed; it wraps ErrLimit.
type LimitError struct {
	What      string
	Need, Max int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s needs %d MiB of decoder memory, over the %d MiB limit", e.What, ceilMiB(e.Need), e.Max>>20)
}

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }

func ceilMiB(n int64) int64 { return (n + 1<<20 - 1) >> 20 }
