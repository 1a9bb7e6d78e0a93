// Package hostileimage builds the images the tests throw at the image
// writer to prove its memory stays bounded: xz streams declaring any LZMA2
// dictionary, zstd frames declaring any window, gzip bombs, and qcow2 files
// with chosen virtual sizes and table layouts (oversized L1 tables, L1
// entries sharing one L2 table, L2 tables scattered across the file, data
// before its tables). Everything is generated; nothing is stored.
package hostileimage

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
)

// XZ returns an xz stream (CRC-32 check) holding data in blocks of at most
// blockSize bytes, each block's LZMA2 filter declaring the dictionary of
// property byte dictProp (40 is 4 GiB − 1, 18 is 1 MiB; see
// xzlimit.DictSize) and carrying the data as stored (uncompressed) LZMA2
// chunks, which any decoder copies through its dictionary.
func XZ(data []byte, dictProp byte, blockSize int) []byte {
	var out bytes.Buffer
	writeXZ(&out, bytes.NewReader(data), int64(len(data)), dictProp, blockSize, false, 0)
	return out.Bytes()
}

// XZClaiming is XZ with every block header declaring its sizes (as
// XZSizedReader) and the first block lying about its size: after its
// data come claims LZMA2 chunks of one compressed byte each declaring
// 2 MiB of output, which its header's sizes and the index count too. The
// framing adds up, so only decoding the block shows the lie: a decoder
// fails on the first of those chunks. The blocks after it are sound.
func XZClaiming(data []byte, dictProp byte, blockSize, claims int) []byte {
	var out bytes.Buffer
	writeXZ(&out, bytes.NewReader(data), int64(len(data)), dictProp, blockSize, true, claims)
	return out.Bytes()
}

// claimChunk is an LZMA2 chunk that resets the state and sets the
// properties (lc=3, lp=0, pb=2), declaring 2 MiB of output from one
// compressed byte.
var claimChunk = []byte{0xc0 | 0x1f, 0xff, 0xff, 0x00, 0x00, 0x5d, 0x00}

// XZReader is XZ for size bytes of a repeating pattern, generated as it is
// read, so huge streams cost no memory.
func XZReader(size int64, dictProp byte, blockSize int) io.Reader {
	return xzReader(size, dictProp, blockSize, false)
}

// XZSizedReader is XZReader with every block header declaring the block's
// compressed and uncompressed sizes, as xz writes them when it compresses
// on several threads: blocks a decoder may read whole and decode in
// parallel.
func XZSizedReader(size int64, dictProp byte, blockSize int) io.Reader {
	return xzReader(size, dictProp, blockSize, true)
}

func xzReader(size int64, dictProp byte, blockSize int, sized bool) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeXZ(pw, io.LimitReader(Pattern(), size), size, dictProp, blockSize, sized, 0))
	}()
	return pr
}

// Pattern returns an endless, incompressible byte sequence (xorshift),
// the same on every call whatever the sizes it is read in.
func Pattern() io.Reader { return &pattern{x: 0x9e3779b97f4a7c15} }

type pattern struct{ x uint64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.x ^= p.x << 13
		p.x ^= p.x >> 7
		p.x ^= p.x << 17
		b[i] = byte(p.x >> 32)
	}
	return len(b), nil
}

type xzRecord struct{ unpadded, size int64 }

func writeXZ(w io.Writer, data io.Reader, size int64, dictProp byte, blockSize int, sized bool, claims int) error {
	le := binary.LittleEndian
	flags := []byte{0, 1} // CRC-32
	hdr := append([]byte("\xfd7zXZ\x00"), flags...)
	hdr = le.AppendUint32(hdr, crc32.ChecksumIEEE(flags))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	var recs []xzRecord
	buf := make([]byte, blockSize)
	for done := int64(0); done < size; {
		n := int(min(int64(blockSize), size-done))
		if _, err := io.ReadFull(data, buf[:n]); err != nil {
			return err
		}
		lies := 0
		if done == 0 {
			lies = claims
		}
		done += int64(n)
		claimed := int64(n) + int64(lies)<<21
		// Block header: size byte, flags (one filter, and the sizes
		// when sized), the sizes, LZMA2 id, one property byte, padding,
		// CRC-32. The data goes in uncompressed LZMA2 chunks of at most
		// 64 KiB, 3 header bytes each, then the claiming chunks, and an
		// end byte.
		bh := []byte{0, 0x00}
		if sized {
			chunks := (n + 1<<16 - 1) >> 16
			bh[1] = 0xc0
			bh = binary.AppendUvarint(bh, uint64(n+3*chunks+lies*len(claimChunk)+1))
			bh = binary.AppendUvarint(bh, uint64(claimed))
		}
		bh = append(bh, 0x21, 1, dictProp)
		for (len(bh)+4)%4 != 0 {
			bh = append(bh, 0)
		}
		bh[0] = byte((len(bh)+4)/4 - 1)
		bh = le.AppendUint32(bh, crc32.ChecksumIEEE(bh))
		var body bytes.Buffer
		body.Write(bh)
		for off, first := 0, true; off < n; first = false {
			k := min(n-off, 1<<16)
			ctl := byte(2)
			if first {
				ctl = 1 // dictionary reset
			}
			body.Write([]byte{ctl, byte((k - 1) >> 8), byte(k - 1)})
			body.Write(buf[off : off+k])
			off += k
		}
		for range lies {
			body.Write(claimChunk)
		}
		body.WriteByte(0) // end of LZMA2
		unpadded := int64(body.Len())
		for body.Len()%4 != 0 {
			body.WriteByte(0)
		}
		body.Write(le.AppendUint32(nil, crc32.ChecksumIEEE(buf[:n])))
		unpadded += 4
		if _, err := w.Write(body.Bytes()); err != nil {
			return err
		}
		recs = append(recs, xzRecord{unpadded, claimed})
	}
	idx := []byte{0}
	idx = binary.AppendUvarint(idx, uint64(len(recs)))
	for _, r := range recs {
		idx = binary.AppendUvarint(idx, uint64(r.unpadded))
		idx = binary.AppendUvarint(idx, uint64(r.size))
	}
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = le.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	foot := le.AppendUint32(nil, uint32(len(idx)/4-1))
	foot = append(foot, flags...)
	foot = append(le.AppendUint32(nil, crc32.ChecksumIEEE(foot)), foot...)
	foot = append(foot, 'Y', 'Z')
	_, err := w.Write(append(idx, foot...))
	return err
}
