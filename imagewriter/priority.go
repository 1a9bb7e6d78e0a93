package imagewriter

import "time"

// decodeNice is the nice value of a compressed image's decode stage. That
// stage is the write's one serial stage; on a small machine the process's
// other threads (which run the hash, the socket reads and the sinks) and
// the kernel's workers otherwise take its core from it, and every such
// turn lengthens the whole write (docs/benchmarks.md, 2026-12-07). Those
// other stages keep running: they are waited on, so the decoder cannot
// run ahead of them by more than its buffers.
const decodeNice = -10

// stageCPU starts measuring the calling thread's CPU time for a stage that
// has the thread to itself (own: prioritizeStage gave it). The returned
// function gives the CPU used since, or 0 when the thread is not the
// stage's own or the kernel did not say.
func stageCPU(own bool) (used func() time.Duration) {
	start, ok := stageThreadCPU()
	return func() time.Duration {
		end, endOK := stageThreadCPU()
		if !own || !ok || !endOK {
			return 0
		}
		return end - start
	}
}
