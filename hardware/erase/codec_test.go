package erase

import (
	"encoding/binary"
	"testing"
	"time"
)

func TestNVMeIdentifyAndFormat(t *testing.T) {
	ctrl := make([]byte, 4096)
	binary.LittleEndian.PutUint16(ctrl[256:], 0x0006) // OACS: format + firmware
	ctrl[524] = 0x04                                  // FNA: crypto erase
	c, err := parseIdentifyController(ctrl)
	if err != nil || !c.FormatSupported || !c.CryptoErase {
		t.Fatalf("%+v %v", c, err)
	}
	if ses, m := chooseSES(c); ses != 2 || m != MethodNVMeCrypto {
		t.Errorf("ses %d %s", ses, m)
	}
	if ses, m := chooseSES(nvmeController{FormatSupported: true}); ses != 1 || m != MethodNVMeUserData {
		t.Errorf("ses %d %s", ses, m)
	}
	ns := make([]byte, 4096)
	ns[26] = 0x12 // FLBAS: format 2, metadata at the end of the LBA
	ns[29] = 0x09 // DPS: PI type 1, PI first
	n, err := parseIdentifyNamespace(ns)
	if err != nil || n.LBAF != 2 || !n.MSET || n.PI != 1 || !n.PIL {
		t.Fatalf("%+v %v", n, err)
	}
	// LBAF 2 | MSET<<4 | PI 1<<5 | PIL<<8 | SES 2<<9
	if got, want := formatCDW10(n, nvmeSESCrypto), uint32(0x2|0x10|0x20|0x100|0x400); got != want {
		t.Errorf("cdw10 %#x, want %#x", got, want)
	}
	// An LBA format index above 15 (FLBAS bits 6:5) lands in CDW10 13:12.
	ns[26] = 0x21
	n, _ = parseIdentifyNamespace(ns)
	if n.LBAF != 0x11 || formatCDW10(n, 1)&0x300f != 0x1001 {
		t.Errorf("extended format index %#x cdw10 %#x", n.LBAF, formatCDW10(n, 1))
	}
	if _, err := parseIdentifyController(ctrl[:100]); err == nil {
		t.Error("short identify accepted")
	}
}

func TestATAIdentifyAndCommands(t *testing.T) {
	id := make([]byte, 512)
	binary.LittleEndian.PutUint16(id[2*82:], 0x0002)
	binary.LittleEndian.PutUint16(id[2*128:], 0x0021)  // supported, enhanced supported
	binary.LittleEndian.PutUint16(id[2*89:], 30)       // 60 minutes
	binary.LittleEndian.PutUint16(id[2*90:], 0x8000|5) // ACS-3 form, 10 minutes
	s, err := parseIdentifySecurity(id)
	if err != nil || !s.Supported || !s.EnhancedSupported || s.Enabled || s.Frozen || s.EraseTime != time.Hour || s.EnhancedEraseTime != 10*time.Minute {
		t.Fatalf("%+v %v", s, err)
	}
	if ataEraseTimeout(s, true) != 25*time.Minute || ataEraseTimeout(ataSecurity{}, false) != ataDefaultEraseTime {
		t.Errorf("timeouts %v %v", ataEraseTimeout(s, true), ataEraseTimeout(ataSecurity{}, false))
	}
	binary.LittleEndian.PutUint16(id[2*128:], 0x0009) // supported, frozen
	if s, _ := parseIdentifySecurity(id); !s.Frozen {
		t.Error("frozen not seen")
	}
	cdb := ataCDB(ataProtoPIODataIn, ataIdentify)
	if cdb != [16]byte{0x85, 0x08, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0xec, 0} {
		t.Errorf("IDENTIFY CDB % x", cdb)
	}
	cdb = ataCDB(ataProtoPIODataOut, ataSecurityEraseUnit)
	if cdb[1] != 0x0a || cdb[2] != 0x06 || cdb[14] != 0xf4 {
		t.Errorf("ERASE UNIT CDB % x", cdb)
	}
	if cdb := ataCDB(ataProtoNonData, ataSecurityErasePrep); cdb[1] != 0x06 || cdb[2] != 0 || cdb[6] != 0 {
		t.Errorf("ERASE PREPARE CDB % x", cdb)
	}
	pw := ataPasswordBlock(true)
	if pw[0] != 0x2 || string(pw[2:6]) != "NULL" || pw[6] != 0 {
		t.Errorf("password block % x", pw[:8])
	}
}
