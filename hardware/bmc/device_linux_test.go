//go:build linux && (amd64 || arm64 || ppc64le || riscv64 || s390x)

package bmc

import (
	"errors"
	"io/fs"
	"testing"
)

// The ioctl numbers of include/uapi/linux/ipmi.h on 64-bit Linux.
func TestIoctlNumbers(t *testing.T) {
	if ipmictlSendCommand != 0x8028690d {
		t.Errorf("IPMICTL_SEND_COMMAND = %#x", ipmictlSendCommand)
	}
	if ipmictlReceiveMsgTrunc != 0xc030690b {
		t.Errorf("IPMICTL_RECEIVE_MSG_TRUNC = %#x", ipmictlReceiveMsgTrunc)
	}
}

func TestOpenMissingDevice(t *testing.T) {
	if _, err := Open("/dev/ipmi-does-not-exist"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(missing) = %v", err)
	}
}
