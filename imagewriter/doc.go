// Package imagewriter streams a disk image from its source to one or more
// block devices, verifying its checksum on the way: fetch, hash and write
// run as concurrent stages joined by a bounded pool of reusable, aligned
// buffers, so throughput is that of the slowest stage and memory stays flat
// whatever the image size. Success is reported only after every byte was
// written, flushed to the device, and the checksum matched.
//
// Package imagewriter knows nothing about the agent API or the conductor.
package imagewriter
