// Package lldp hears the LLDP frames that switches send to each of the
// machine's network interfaces and splits them into TLVs, as the Ironic
// Python Agent does when booted with ipa-collect-lldp=1: one raw socket
// per interface on ethertype 0x88cc, in promiscuous mode, all interfaces
// at once, the first well-formed frame of each kept, for at most
// ipa-lldp-timeout (30 s by default).
//
// What a frame may hold is bounded whatever it says about itself: frames
// over MaxFrameSize are dropped by the socket's BPF filter before they are
// queued, an LLDPDU yields at most MaxTLVs TLVs, and a truncated or
// otherwise malformed frame is dropped and the interface keeps listening.
// The TLV values are not interpreted here; the conductor parses them
// (conductor/lldp) into Ironic's parsed_lldp.
package lldp
