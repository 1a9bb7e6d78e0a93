package erase

import (
	"encoding/binary"
	"fmt"
)

// NVMe admin command opcodes and fields used by the format erase.
const (
	nvmeOpIdentify  = 0x06
	nvmeOpFormatNVM = 0x80
	// Identify CNS values.
	nvmeCNSNamespace  = 0x00
	nvmeCNSController = 0x01
	// Secure erase settings of Format NVM (CDW10 bits 11:9).
	nvmeSESUserData = 1
	nvmeSESCrypto   = 2
)

// nvmeController is what the format erase needs from Identify Controller.
type nvmeController struct {
	// FormatSupported: OACS bit 1 (Format NVM command).
	FormatSupported bool
	// CryptoErase: FNA bit 2 (cryptographic erase supported).
	CryptoErase bool
}

// parseIdentifyController decodes the 4096-byte Identify Controller data.
func parseIdentifyController(b []byte) (nvmeController, error) {
	if len(b) < 4096 {
		return nvmeController{}, fmt.Errorf("identify controller: %d bytes, want 4096", len(b))
	}
	oacs := binary.LittleEndian.Uint16(b[256:258])
	fna := b[524]
	return nvmeController{FormatSupported: oacs&0x2 != 0, CryptoErase: fna&0x4 != 0}, nil
}

// nvmeNamespace is what Format NVM must keep from Identify Namespace: the
// current LBA format, metadata setting and protection information.
type nvmeNamespace struct {
	LBAF uint32 // format index (FLBAS bits 3:0, plus bits 6:5 as 5:4)
	MSET bool   // metadata transferred at the end of the LBA (FLBAS bit 4)
	PI   uint32 // protection information type (DPS bits 2:0)
	PIL  bool   // PI at the start of metadata (DPS bit 3)
}

// parseIdentifyNamespace decodes the 4096-byte Identify Namespace data.
func parseIdentifyNamespace(b []byte) (nvmeNamespace, error) {
	if len(b) < 4096 {
		return nvmeNamespace{}, fmt.Errorf("identify namespace: %d bytes, want 4096", len(b))
	}
	flbas, dps := b[26], b[29]
	return nvmeNamespace{
		LBAF: uint32(flbas&0x0f) | uint32(flbas&0x60)>>1,
		MSET: flbas&0x10 != 0,
		PI:   uint32(dps & 0x07),
		PIL:  dps&0x08 != 0,
	}, nil
}

// formatCDW10 builds Format NVM's command dword 10: the namespace's own
// format (so the block size does not change) and the erase setting.
func formatCDW10(ns nvmeNamespace, ses uint32) uint32 {
	v := ns.LBAF&0x0f | ses<<9 | ns.PI<<5 | (ns.LBAF>>4&0x3)<<12
	if ns.MSET {
		v |= 1 << 4
	}
	if ns.PIL {
		v |= 1 << 8
	}
	return v
}

// chooseSES picks the secure erase setting: crypto erase when the
// controller supports it, else user-data erase.
func chooseSES(c nvmeController) (uint32, string) {
	if c.CryptoErase {
		return nvmeSESCrypto, MethodNVMeCrypto
	}
	return nvmeSESUserData, MethodNVMeUserData
}
