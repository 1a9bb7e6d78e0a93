package layout

import (
	"encoding/binary"
	"fmt"
)

// SwapPageSize is the page size of the swap signature written (x86-64,
// arm64 with 4 KiB pages).
const SwapPageSize = 4096

// SwapHeader returns the first page of a swap area of size bytes, as
// mkswap writes it: version 1, the last usable page, no bad pages, the
// UUID and label, and the "SWAPSPACE2" signature at the end of the page.
func SwapHeader(size int64, uuid [16]byte, label string) ([]byte, error) {
	pages := size / SwapPageSize
	if pages < 10 {
		return nil, fmt.Errorf("swap area of %d bytes is too small (10 pages at least)", size)
	}
	if pages-1 > 1<<32-1 {
		return nil, fmt.Errorf("swap area of %d bytes is too large", size)
	}
	if len(label) > 16 {
		return nil, fmt.Errorf("swap label %q is longer than 16 bytes", label)
	}
	b := make([]byte, SwapPageSize)
	le := binary.LittleEndian
	le.PutUint32(b[1024:], 1)               // version
	le.PutUint32(b[1028:], uint32(pages-1)) // last_page
	le.PutUint32(b[1032:], 0)               // nr_badpages
	copy(b[1036:1052], uuid[:])             // sws_uuid
	copy(b[1052:1068], label)               // sws_volume
	copy(b[SwapPageSize-10:], "SWAPSPACE2") // magic
	return b, nil
}
