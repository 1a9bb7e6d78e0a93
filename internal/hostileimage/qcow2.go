package hostileimage

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"

	"github.com/klauspost/compress/gzip"
)

// QCOW2 describes a version 3 qcow2 file with standard (uncompressed)
// clusters. The zero value of every field but ClusterBits and Size gives a
// tidy image: header, L1 table, every L2 table, then the data in guest
// order.
type QCOW2 struct {
	ClusterBits uint32
	// Size is the virtual disk size the header declares.
	Size int64
	// L1Entries is the L1 size the header declares; 0 means just enough
	// for Size. Only the entries Size needs are filled.
	L1Entries int64
	// Data maps guest cluster indexes to their contents (at most a
	// cluster each; the rest of the cluster reads as zeros).
	Data map[int64][]byte
	// SharedL2 points every L1 entry at one L2 table, which maps the
	// clusters of Data that fall in the first L1 span; every span of the
	// disk then reads the same.
	SharedL2 bool
	// L2Gap leaves this many empty clusters before each L2 table, so the
	// tables lie scattered across the file.
	L2Gap int64
	// DataFirst puts the data clusters before the L1 and L2 tables (a
	// layout that cannot be converted while streaming).
	DataFirst bool
}

// ClusterSize is the cluster size in bytes.
func (q QCOW2) ClusterSize() int64 { return 1 << q.ClusterBits }

// span is the guest bytes one L2 table maps.
func (q QCOW2) span() int64 { return q.ClusterSize() * (q.ClusterSize() / 8) }

// Raw returns the virtual disk the file describes.
func (q QCOW2) Raw() []byte {
	raw := make([]byte, q.Size)
	cs := q.ClusterSize()
	for g, d := range q.Data {
		if q.SharedL2 {
			if g*cs >= q.span() {
				continue
			}
			for base := int64(0); base < q.Size; base += q.span() {
				if off := base + g*cs; off < q.Size {
					copy(raw[off:min(off+cs, q.Size)], d)
				}
			}
			continue
		}
		copy(raw[g*cs:min(g*cs+cs, q.Size)], d)
	}
	return raw
}

// Build returns the qcow2 file.
func (q QCOW2) Build() []byte {
	cs := q.ClusterSize()
	need := (q.Size + q.span() - 1) / q.span()
	l1n := q.L1Entries
	if l1n == 0 {
		l1n = need
	}
	l1Clusters := (l1n*8 + cs - 1) / cs
	guests := make([]int64, 0, len(q.Data))
	for g := range q.Data {
		if !q.SharedL2 || g*cs < q.span() {
			guests = append(guests, g)
		}
	}
	slices.Sort(guests)
	l2Count := need
	if q.SharedL2 {
		l2Count = 1
	}
	// Layout, in clusters: header (0), then tables and data in the
	// chosen order.
	next := int64(1)
	alloc := func(n int64) int64 { at := next; next += n; return at }
	var dataAt, l1At int64
	l2At := make([]int64, l2Count)
	placeTables := func() {
		l1At = alloc(l1Clusters)
		for i := range l2At {
			next += q.L2Gap
			l2At[i] = alloc(1)
		}
	}
	if q.DataFirst {
		dataAt = alloc(int64(len(guests)))
		placeTables()
	} else {
		placeTables()
		dataAt = alloc(int64(len(guests)))
	}
	file := make([]byte, next*cs)
	be := binary.BigEndian
	h := file[:112]
	copy(h, "QFI\xfb")
	be.PutUint32(h[4:], 3)
	be.PutUint32(h[20:], q.ClusterBits)
	be.PutUint64(h[24:], uint64(q.Size))
	be.PutUint32(h[36:], uint32(l1n))
	be.PutUint64(h[40:], uint64(l1At*cs))
	be.PutUint32(h[96:], 4)
	be.PutUint32(h[100:], 112)
	for i := int64(0); i < need; i++ {
		l2 := l2At[0]
		if !q.SharedL2 {
			l2 = l2At[i]
		}
		be.PutUint64(file[l1At*cs+i*8:], 1<<63|uint64(l2*cs))
	}
	l2n := cs / 8
	for k, g := range guests {
		host := (dataAt + int64(k)) * cs
		copy(file[host:host+cs], q.Data[g])
		table := l2At[0]
		if !q.SharedL2 {
			table = l2At[g/l2n]
		}
		be.PutUint64(file[table*cs+(g%l2n)*8:], 1<<63|uint64(host))
	}
	return file
}

// gzipZerosMember is how many zero bytes one gzip member of GzipZeros
// holds: compressed once (about 8 KiB) and repeated, so that a bomb of
// gigabytes costs milliseconds to make, even under the race detector.
const gzipZerosMember = 8 << 20

// GzipZeros returns a gzip stream of size zero bytes: concatenated gzip
// members (RFC 1952 allows several; every gzip reader reads them as one
// stream), each 8 MiB of zeros in about 8 KiB, so the whole inflates a
// thousandfold.
func GzipZeros(size int64) io.Reader {
	member := func(n int64) []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression) // a valid level cannot fail
		zeros := make([]byte, 1<<20)
		for done := int64(0); done < n; {
			k := min(int64(len(zeros)), n-done)
			zw.Write(zeros[:k]) // a bytes.Buffer does not fail
			done += k
		}
		zw.Close()
		return b.Bytes()
	}
	full := member(min(size, gzipZerosMember))
	var parts []io.Reader
	for left := size; left > 0; left -= gzipZerosMember {
		if left >= gzipZerosMember || left == size {
			parts = append(parts, bytes.NewReader(full))
		} else {
			parts = append(parts, bytes.NewReader(member(left)))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, bytes.NewReader(member(0)))
	}
	return io.MultiReader(parts...)
}
