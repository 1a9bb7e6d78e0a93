// Package lldp turns the raw LLDP TLVs an agent reports (IPA's
// inventory interfaces[].lldp, or the "lldp" collector's lldp_raw: lists
// of [type, hex value] pairs) into Ironic's parsed_lldp, the per-interface
// description of the neighbouring switch port that Ironic's parse_lldp
// inspection hook stores in plugin_data and that Metal3 reads
// (switch_chassis_id, switch_port_id, switch_system_name, VLANs, …).
//
// It reads what Ironic's parser reads (IEEE 802.1AB basic management TLVs,
// the 802.1Q and 802.3 organizationally specific ones) under the same
// names, with the same values and types, first value wins for single
// values, lists in TLV order. Where Ironic's parser is wrong or crashes,
// this one is right and says why in docs/inspection.md. A malformed TLV is
// skipped and reported; nothing a TLV says about itself makes the parser
// hold more than the TLVs themselves.
//
// The package is a leaf: the standard library and wire only.
package lldp
