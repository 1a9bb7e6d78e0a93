package qcow2

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Errors for images refused for what reading them would cost.
var (
	// ErrMemoryLimit: holding the image's L1 table and extent map would
	// take more memory than Limits.MaxMemory.
	ErrMemoryLimit = errors.New("qcow2 tables need more memory than allowed")
	// ErrTooManyReads: the tables lie so scattered that reading them
	// needs more random reads (range requests) than Limits.MaxReads. The
	// file can still be converted in one sequential pass (Stream) when its
	// tables come before their data.
	ErrTooManyReads = errors.New("qcow2 tables need too many random reads")
)

// Defaults of Limits.
const (
	DefaultMaxMemory = 128 << 20
	DefaultMaxReads  = 4096
	DefaultParallel  = 4
)

// Costs charged against Limits.MaxMemory.
const (
	// l1EntryCost is an L1 entry (8 bytes) and its slot in the order of
	// distinct L2 tables (4 bytes), rounded up.
	l1EntryCost = 16
	// extentCost is an Extent (40 bytes) and its share of slice growth
	// and sorting.
	extentCost = 96
)

// Reads of the tables: pieces of at most maxReadBytes (or one cluster),
// tables closer than mergeGap read together.
const (
	maxReadBytes = 1 << 20
	mergeGap     = 64 << 10
)

// Limits bound what converting an image may cost, whatever its header
// says. Zero fields mean the defaults.
type Limits struct {
	// MaxMemory bounds the L1 entries and the extent map held at once
	// (ErrMemoryLimit); 0 means DefaultMaxMemory.
	MaxMemory int64
	// MaxReads bounds ReadMap's random reads (ErrTooManyReads); 0 means
	// DefaultMaxReads.
	MaxReads int
	// Parallel is how many of ReadMap's reads run at once; 0 means
	// DefaultParallel.
	Parallel int
}

func (l Limits) withDefaults() Limits {
	if l.MaxMemory <= 0 {
		l.MaxMemory = DefaultMaxMemory
	}
	if l.MaxReads <= 0 {
		l.MaxReads = DefaultMaxReads
	}
	if l.Parallel <= 0 {
		l.Parallel = DefaultParallel
	}
	return l
}

// budget counts memory charged against a limit; safe for concurrent use.
type budget struct {
	max  int64
	used atomic.Int64
}

func (b *budget) charge(n int64, what string) error {
	if u := b.used.Add(n); u > b.max {
		return fmt.Errorf("%w: %s takes the tables past %d MiB (limit %d MiB)", ErrMemoryLimit, what, (u+1<<20-1)>>20, b.max>>20)
	}
	return nil
}

// L1Needed is the number of L1 entries the virtual size needs; entries
// past it map nothing and are never read.
func (h *Header) L1Needed() int64 {
	span := h.ClusterSize() * h.L2Entries()
	return int64((h.Size + uint64(span) - 1) / uint64(span))
}
