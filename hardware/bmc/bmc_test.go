package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

// fakeBMC answers Get LAN Configuration Parameters from a table keyed by
// channel, parameter and set selector; a missing entry is completion code
// 0xcc (invalid data field: not a LAN channel).
type fakeBMC struct {
	params map[[3]byte][]byte
	calls  int
	err    error
}

func (f *fakeBMC) Exchange(_ context.Context, netFn, cmd byte, data []byte) ([]byte, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if netFn != netFnTransport || cmd != cmdGetLANConfigParams || len(data) != 4 || data[3] != 0 {
		return nil, fmt.Errorf("unexpected request %#x %#x % x", netFn, cmd, data)
	}
	d, ok := f.params[[3]byte{data[0], data[1], data[2]}]
	if !ok {
		return []byte{0xcc}, nil
	}
	return append([]byte{0x00, 0x11}, d...), nil
}

func v6Entry(set, source byte, addr string, status byte) []byte {
	e := []byte{set, source}
	e = append(e, net.ParseIP(addr).To16()...)
	return append(e, 64, status)
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params map[[3]byte][]byte
		want   Info
	}{
		{"nothing", nil, Info{Address: "0.0.0.0", V6Address: "::/0"}},
		{"channel 1", map[[3]byte][]byte{
			{1, paramIPAddress, 0}:  {192, 0, 2, 10},
			{1, paramMACAddress, 0}: {0x52, 0x54, 0, 0xab, 0xcd, 0xef},
		}, Info{Address: "192.0.2.10", MAC: "52:54:00:ab:cd:ef", V6Address: "::/0"}},
		{"unset channel 1, channel 2 set", map[[3]byte][]byte{
			{1, paramIPAddress, 0}:  {0, 0, 0, 0},
			{1, paramMACAddress, 0}: {0x52, 0x54, 0, 0, 0, 1},
			{2, paramIPAddress, 0}:  {10, 1, 2, 3},
			{2, paramMACAddress, 0}: {0x52, 0x54, 0, 0, 0, 2},
		}, Info{Address: "10.1.2.3", MAC: "52:54:00:00:00:02", V6Address: "::/0"}},
		{"zero MAC", map[[3]byte][]byte{
			{3, paramIPAddress, 0}:  {10, 0, 0, 3},
			{3, paramMACAddress, 0}: {0, 0, 0, 0, 0, 0},
		}, Info{Address: "10.0.0.3", V6Address: "::/0"}},
		{"IPv6 dynamic before static", map[[3]byte][]byte{
			{1, paramIPv6Enables, 0}:        {2},
			{1, paramIPv6DynamicAddress, 0}: v6Entry(0, 1, "fe80::1", 3),        // SLAAC, failed
			{1, paramIPv6DynamicAddress, 1}: v6Entry(1, 2, "2001:db8::42", 0),   // DHCPv6, active
			{1, paramIPv6StaticAddress, 0}:  v6Entry(0, 0x80, "2001:db8::1", 0), // static, enabled
		}, Info{Address: "0.0.0.0", V6Address: "2001:db8::42"}},
		{"IPv6 static", map[[3]byte][]byte{
			{4, paramIPv6Enables, 0}:       {1},
			{4, paramIPv6StaticAddress, 0}: v6Entry(0, 0x00, "2001:db8::7", 0), // disabled
			{4, paramIPv6StaticAddress, 1}: v6Entry(1, 0x80, "2001:db8::8", 0),
		}, Info{Address: "0.0.0.0", V6Address: "2001:db8::8"}},
		{"IPv6 off", map[[3]byte][]byte{
			{1, paramIPv6Enables, 0}:       {0},
			{1, paramIPv6StaticAddress, 0}: v6Entry(0, 0x80, "2001:db8::1", 0),
		}, Info{Address: "0.0.0.0", V6Address: "::/0"}},
		{"short answers", map[[3]byte][]byte{
			{1, paramIPAddress, 0}:         {10, 0},
			{2, paramIPv6Enables, 0}:       {2},
			{2, paramIPv6StaticAddress, 0}: {0, 0x80, 1},
		}, Info{Address: "0.0.0.0", V6Address: "::/0"}},
	} {
		got, err := Read(context.Background(), &fakeBMC{params: tc.params})
		if err != nil || got != tc.want {
			t.Errorf("%s: Read = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestReadUnreachable(t *testing.T) {
	f := &fakeBMC{err: errors.New("no response within 5s")}
	if _, err := Read(context.Background(), f); err == nil {
		t.Fatal("a BMC that never answers read as fine")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Read(ctx, &fakeBMC{err: context.Canceled}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
