// Package e2e holds Rivet's end-to-end tests: the real rivet-conductor and
// rivet CLI binaries on loopback, a QEMU node (TCG) booting the real deploy
// ramdisk, a real bootable image deployed onto its virtual disk and then
// booted from it by OVMF. They need the artefacts `make test` builds; run
// on their own they skip with the reason, unless RIVET_REQUIRE_E2E=1.
package e2e
