// Package testswitch gives tests a switch port to plug into: a veth pair
// between two network namespaces the test creates, the near end standing
// for a machine's NIC and the far end for the switch's port, where
// Debian's lldpd can announce a switch over LLDP. Everything is removed
// when the test ends, and nothing sent on the pair leaves the namespaces.
// Tests skip (or, under RIVET_REQUIRE_E2E=1, fail) without root, ip(8) or
// lldpd.
package testswitch
