package lldp

import (
	"sync"

	"golang.org/x/net/bpf"
)

// filterProgram is the classic BPF program attached to every socket before
// it is bound, so that nothing else is ever queued: it keeps frames whose
// ethertype is LLDP's and whose length is at most MaxFrameSize, and drops
// the rest in the kernel. (The socket is also bound to EtherType; the
// length test is what bounds the receive queue.)
var filterProgram = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 12, Size: 2},                              // ethertype
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherType, SkipTrue: 3}, // → drop
	bpf.LoadExtension{Num: bpf.ExtLen},                              // frame length
	bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: MaxFrameSize, SkipTrue: 1},
	bpf.RetConstant{Val: MaxFrameSize}, // keep the whole frame
	bpf.RetConstant{Val: 0},            // drop
}

// assembledFilter is filterProgram in the kernel's encoding.
var assembledFilter = sync.OnceValues(func() ([]bpf.RawInstruction, error) {
	return bpf.Assemble(filterProgram)
})
