package imagewriter

// decodeNice is the nice value of a compressed image's decode stage. That
// stage is the write's one serial stage; on a small machine the process's
// other threads (which run the hash, the socket reads and the sinks) and
// the kernel's workers otherwise take its core from it, and every such
// turn lengthens the whole write (docs/benchmarks.md, 2026-12-07). Those
// other stages keep running: they are waited on, so the decoder cannot
// run ahead of them by more than its buffers.
const decodeNice = -10
