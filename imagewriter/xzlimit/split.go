package xzlimit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Splitter cuts an xz file (one or more streams, with stream padding)
// into its blocks, which decode independently of each other: every block
// starts with a fresh LZMA2 dictionary. It reads the file once, in order,
// and hands out one block at a time (Next); a block's bytes are read
// through the Block itself, which walks its LZMA2 chunk headers to learn
// its sizes without decoding it, and checks them against what its header
// declares. Once a stream's blocks are read, the Splitter checks its index
// against them and its footer against its header, so a decoder given each
// block as a stream of its own (Block.Stream) checks everything the file's
// framing says. The Splitter keeps 16 bytes per block of the current
// stream, bounded by the memory limit as the Reader bounds an index.
type Splitter struct {
	r         io.Reader
	maxMemory int64
	maxRecs   int64

	// flags are the current stream's flags, check its check field size.
	flags   [2]byte
	check   int
	inside  bool // a stream header was read, its index not yet
	streams int
	records []record
	cur     *Block
	buf     [1024]byte
	err     error
}

// record is a block's entry in its stream's index.
type record struct{ unpadded, uncompressed int64 }

// NewSplitter returns a Splitter over r that refuses a dictionary of more
// than half of maxMemory and a stream of more blocks than maxMemory allows
// index records for.
func NewSplitter(r io.Reader, maxMemory int64) *Splitter {
	return &Splitter{r: r, maxMemory: maxMemory, maxRecs: max(maxMemory/indexRecordCost, 1)}
}

// Block is one block of an xz file. Its Read hands out the block's bytes
// (header, compressed data, padding, check) and ends with io.EOF after the
// check, once the sizes add up; DecodedSize is then known (Size, from
// the header, before).
type Block struct {
	passer
	s *Splitter
	// Dict is the block's LZMA2 dictionary size.
	Dict int64
	// declared are the compressed and uncompressed sizes its header
	// declares (-1 where it leaves one out).
	declared blockHeader

	flags        [2]byte
	check        int // its stream's check field size
	headerLen    int64
	compressed   int64 // LZMA2 bytes walked
	uncompressed int64 // bytes the walked chunks decode to
	st           blockState
}

type blockState int

const (
	bsChunk blockState = iota
	bsEnd
	bsDone
)

// Next returns the file's next block, or io.EOF after the last stream's
// footer and padding. The block before must have been read to its end.
func (s *Splitter) Next() (*Block, error) {
	if s.err != nil {
		return nil, s.err
	}
	b, err := s.next()
	if err != nil {
		s.err = err
	}
	return b, err
}

func (s *Splitter) next() (*Block, error) {
	if s.cur != nil {
		if s.cur.st != bsDone {
			return nil, errors.New("xzlimit: Next before the last block was read to its end")
		}
		s.records = append(s.records, record{s.cur.unpadded(), s.cur.uncompressed})
		s.cur = nil
	}
	for {
		if !s.inside {
			if err := s.nextStream(); err != nil {
				return nil, err
			}
			continue
		}
		b, err := s.fill(1)
		if err != nil {
			return nil, err
		}
		if b[0] == 0 {
			if err := s.index(); err != nil {
				return nil, err
			}
			continue
		}
		h, err := readBlockHeader(s.r, b[0], s.buf[:])
		if err != nil {
			return nil, err
		}
		bh, err := parseBlockHeader(h, s.maxMemory)
		if err != nil {
			return nil, err
		}
		if int64(len(s.records)) >= s.maxRecs {
			return nil, &LimitError{What: "index of more than " + fmt.Sprint(s.maxRecs) + " blocks", Need: (s.maxRecs + 1) * indexRecordCost, Max: s.maxMemory}
		}
		s.cur = &Block{passer: passer{r: s.r, out: bytes.Clone(h)}, s: s, Dict: bh.dict, declared: bh,
			flags: s.flags, check: s.check, headerLen: int64(len(h))}
		return s.cur, nil
	}
}

// nextStream reads stream padding and the next stream header; io.EOF at
// the end of the file.
func (s *Splitter) nextStream() error {
	for {
		b := s.buf[:4]
		n, err := io.ReadFull(s.r, b)
		switch {
		case n == 0 && err == io.EOF:
			if s.streams == 0 {
				return fmt.Errorf("%w: no xz stream", ErrCorrupt)
			}
			return io.EOF
		case err == io.ErrUnexpectedEOF:
			return fmt.Errorf("%w: %d stray bytes after the stream", ErrCorrupt, n)
		case err != nil:
			return err
		case binary.LittleEndian.Uint32(b) == 0 && s.streams > 0:
			continue // stream padding
		}
		if _, err := readFull(s.r, s.buf[4:streamHeaderLen]); err != nil {
			return fmt.Errorf("%w: a stream header: %w", ErrCorrupt, err)
		}
		check, err := parseStreamHeader(s.buf[:streamHeaderLen])
		if err != nil {
			return err
		}
		s.flags = [2]byte{s.buf[6], s.buf[7]}
		s.check = check
		s.inside = true
		s.streams++
		s.records = s.records[:0]
		return nil
	}
}

// index checks the index (its indicator byte read) against the blocks
// handed out, then the footer.
func (s *Splitter) index() error {
	crc := crc32.NewIEEE()
	crc.Write([]byte{0})
	size := int64(1)
	varint := func() (uint64, error) {
		return readVLI(s.fill, func(b byte) {
			crc.Write([]byte{b})
			size++
		})
	}
	count, err := varint()
	if err != nil {
		return err
	}
	if count != uint64(len(s.records)) {
		return fmt.Errorf("%w: the index lists %d blocks, the stream has %d", ErrCorrupt, count, len(s.records))
	}
	for i, r := range s.records {
		unpadded, err := varint()
		if err != nil {
			return err
		}
		uncompressed, err := varint()
		if err != nil {
			return err
		}
		if unpadded != uint64(r.unpadded) || uncompressed != uint64(r.uncompressed) {
			return fmt.Errorf("%w: the index says block %d holds %d bytes decoding to %d, the block holds %d decoding to %d",
				ErrCorrupt, i, unpadded, uncompressed, r.unpadded, r.uncompressed)
		}
	}
	pad := int((4 - size%4) % 4)
	b, err := s.fill(pad + 4)
	if err != nil {
		return err
	}
	if !isZeros(b[:pad]) {
		return fmt.Errorf("%w: index padding is not zero", ErrCorrupt)
	}
	crc.Write(b[:pad])
	if crc.Sum32() != binary.LittleEndian.Uint32(b[pad:]) {
		return fmt.Errorf("%w: index CRC mismatch", ErrCorrupt)
	}
	size += int64(pad) + 4
	f, err := s.fill(footerLen)
	if err != nil {
		return err
	}
	switch {
	case string(f[10:12]) != footerMagic:
		return fmt.Errorf("%w: bad stream footer magic", ErrCorrupt)
	case crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[0:4]):
		return fmt.Errorf("%w: stream footer CRC mismatch", ErrCorrupt)
	case f[8] != s.flags[0] || f[9] != s.flags[1]:
		return fmt.Errorf("%w: the stream footer's flags differ from its header's", ErrCorrupt)
	case (int64(binary.LittleEndian.Uint32(f[4:8]))+1)*4 != size:
		return fmt.Errorf("%w: the stream footer says the index is %d bytes, it is %d", ErrCorrupt, (int64(binary.LittleEndian.Uint32(f[4:8]))+1)*4, size)
	}
	s.inside = false
	return nil
}

// fill reads exactly n framing bytes; the end of the input there is
// ErrUnexpectedEOF.
func (s *Splitter) fill(n int) ([]byte, error) { return readFull(s.r, s.buf[:n]) }

func isZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Read hands out the block's next bytes.
func (b *Block) Read(p []byte) (int, error) { return b.read(p, b.step) }

// step reads the block's next framing element.
func (b *Block) step() error {
	switch b.st {
	case bsChunk:
		c, err := readChunkHeader(b.s.fill)
		if err != nil {
			return err
		}
		b.compressed += int64(len(c.framing)) + c.pass
		b.uncompressed += c.size
		if b.declared.compressed >= 0 && b.compressed > b.declared.compressed {
			return fmt.Errorf("%w: a block runs past the %d compressed bytes its header declares", ErrCorrupt, b.declared.compressed)
		}
		if b.declared.uncompressed >= 0 && b.uncompressed > b.declared.uncompressed {
			return fmt.Errorf("%w: a block decodes to more than the %d bytes its header declares", ErrCorrupt, b.declared.uncompressed)
		}
		b.out = append(b.out[:0], c.framing...)
		b.pass = c.pass
		if c.end {
			b.st = bsEnd
		}
		return nil
	case bsEnd:
		if b.declared.compressed >= 0 && b.compressed != b.declared.compressed {
			return fmt.Errorf("%w: a block holds %d compressed bytes, its header declares %d", ErrCorrupt, b.compressed, b.declared.compressed)
		}
		if b.declared.uncompressed >= 0 && b.uncompressed != b.declared.uncompressed {
			return fmt.Errorf("%w: a block decodes to %d bytes, its header declares %d", ErrCorrupt, b.uncompressed, b.declared.uncompressed)
		}
		n := int((4-(b.headerLen+b.compressed)%4)%4) + b.check
		t, err := b.s.fill(n)
		if err != nil {
			return err
		}
		if !isZeros(t[:n-b.check]) {
			return fmt.Errorf("%w: block padding is not zero", ErrCorrupt)
		}
		b.out = append(b.out[:0], t...)
		b.st = bsDone
		return nil
	}
	return io.EOF
}

// Size is the block's length in the file (header, compressed data,
// padding and check), as its header declares it; -1 when the header does
// not declare its compressed size.
func (b *Block) Size() int64 {
	if b.declared.compressed < 0 {
		return -1
	}
	return b.headerLen + (b.declared.compressed+3)&^3 + int64(b.check)
}

// DecodedSize is the number of bytes the block decodes to, known once it
// was read to its end (the sum of its LZMA2 chunks' sizes; every filter
// before LZMA2 keeps sizes).
func (b *Block) DecodedSize() int64 { return b.uncompressed }

// unpadded is the block's unpadded size (for the index).
func (b *Block) unpadded() int64 { return b.headerLen + b.compressed + int64(b.check) }

// Stream returns an xz stream of this one block, whose bytes body yields
// (the block itself, or a copy of them): the file's stream header, the
// block, and an index and footer made from the block's sizes once body is
// at its end. A decoder reading it checks the block's data, its check and
// the sizes.
func (b *Block) Stream(body io.Reader) io.Reader {
	le := binary.LittleEndian
	h := append([]byte(headerMagic), b.flags[:]...)
	h = le.AppendUint32(h, crc32.ChecksumIEEE(b.flags[:]))
	return io.MultiReader(bytes.NewReader(h), body, &lazyTail{b: b})
}

// lazyTail is a one-block stream's index and footer, made when first
// read.
type lazyTail struct {
	b   *Block
	out []byte
	set bool
}

func (t *lazyTail) Read(p []byte) (int, error) {
	if !t.set {
		t.set = true
		if t.b.st != bsDone {
			return 0, io.ErrUnexpectedEOF
		}
		le := binary.LittleEndian
		idx := []byte{0, 1}
		idx = binary.AppendUvarint(idx, uint64(t.b.unpadded()))
		idx = binary.AppendUvarint(idx, uint64(t.b.uncompressed))
		for len(idx)%4 != 0 {
			idx = append(idx, 0)
		}
		idx = le.AppendUint32(idx, crc32.ChecksumIEEE(idx))
		foot := le.AppendUint32(nil, uint32(len(idx)/4-1))
		foot = append(foot, t.b.flags[:]...)
		foot = append(le.AppendUint32(nil, crc32.ChecksumIEEE(foot)), foot...)
		t.out = append(append(idx, foot...), footerMagic...)
	}
	if len(t.out) == 0 {
		return 0, io.EOF
	}
	n := copy(p, t.out)
	t.out = t.out[n:]
	return n, nil
}
