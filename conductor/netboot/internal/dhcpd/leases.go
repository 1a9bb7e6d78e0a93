package dhcpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// offerHold is how long an offered address stays reserved for the client
// it was offered to.
const offerHold = time.Minute

// maxRange caps the range size so that the table stays small whatever the
// configuration says.
const maxRange = 1 << 16

// leases is Full mode's lease table, in memory: a conductor restart
// forgets it, and clients then get their address back (a REQUEST for a
// free address in the range is granted) or a new one.
type leases struct {
	start, end uint32

	mu    sync.Mutex
	byMAC map[string]*lease
	byIP  map[uint32]*lease
}

type lease struct {
	mac    string // "" for a declined address
	ip     uint32
	expiry time.Time
}

func ip4(ip net.IP) (uint32, bool) {
	v4 := ip.To4()
	if v4 == nil {
		return 0, false
	}
	return binary.BigEndian.Uint32(v4), true
}

func ipOf(v uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

func newLeases(start, end net.IP) (*leases, error) {
	s, ok1 := ip4(start)
	e, ok2 := ip4(end)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("range %v-%v is not IPv4", start, end)
	}
	if s > e {
		return nil, fmt.Errorf("range %v-%v ends before it starts", start, end)
	}
	if e-s >= maxRange {
		return nil, fmt.Errorf("range %v-%v holds more than %d addresses", start, end, maxRange)
	}
	if start.To4()[3] == 0 || end.To4()[3] == 255 {
		return nil, errors.New("range must not include a .0 or .255 address")
	}
	return &leases{start: s, end: e, byMAC: map[string]*lease{}, byIP: map[uint32]*lease{}}, nil
}

func (l *leases) contains(ip net.IP) bool {
	v, ok := ip4(ip)
	return ok && v >= l.start && v <= l.end
}

// freeLocked reports whether v can go to mac now.
func (l *leases) freeLocked(v uint32, mac string, now time.Time) bool {
	cur, ok := l.byIP[v]
	return !ok || cur.mac == mac && mac != "" || now.After(cur.expiry)
}

func (l *leases) setLocked(mac string, v uint32, expiry time.Time) {
	if old, ok := l.byMAC[mac]; ok && mac != "" {
		delete(l.byIP, old.ip)
	}
	if cur, ok := l.byIP[v]; ok && cur.mac != "" {
		delete(l.byMAC, cur.mac)
	}
	le := &lease{mac: mac, ip: v, expiry: expiry}
	l.byIP[v] = le
	if mac != "" {
		l.byMAC[mac] = le
	}
}

// offer picks the client's address for an OFFER: its current lease, the
// address it asks for when free, or the first free one; nil when the range
// is full. The address is held for offerHold.
func (l *leases) offer(mac string, requested net.IP, now time.Time) net.IP {
	l.mu.Lock()
	defer l.mu.Unlock()
	hold := now.Add(offerHold)
	if cur, ok := l.byMAC[mac]; ok {
		if cur.expiry.Before(hold) {
			cur.expiry = hold
		}
		return ipOf(cur.ip)
	}
	if v, ok := ip4(requested); ok && v >= l.start && v <= l.end && l.freeLocked(v, mac, now) {
		l.setLocked(mac, v, hold)
		return ipOf(v)
	}
	for v := l.start; ; v++ {
		if l.freeLocked(v, mac, now) {
			l.setLocked(mac, v, hold)
			return ipOf(v)
		}
		if v == l.end {
			return nil
		}
	}
}

// bind leases ip to mac for ttl; false when another client holds it.
func (l *leases) bind(mac string, ip net.IP, now time.Time, ttl time.Duration) bool {
	v, ok := ip4(ip)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.freeLocked(v, mac, now) {
		return false
	}
	l.setLocked(mac, v, now.Add(ttl))
	return true
}

// release ends mac's lease (only when it is on ip, if ip is given).
func (l *leases) release(mac string, ip net.IP) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.byMAC[mac]
	if !ok {
		return
	}
	if v, isIP := ip4(ip); isIP && v != 0 && v != cur.ip {
		return
	}
	delete(l.byMAC, mac)
	delete(l.byIP, cur.ip)
}

// decline keeps an address a client found in use out of the pool for ttl.
func (l *leases) decline(ip net.IP, now time.Time, ttl time.Duration) {
	v, ok := ip4(ip)
	if !ok || v < l.start || v > l.end {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setLocked("", v, now.Add(ttl))
}

func (l *leases) snapshot(now time.Time) map[string]net.IP {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]net.IP{}
	for mac, le := range l.byMAC {
		if !now.After(le.expiry) {
			out[mac] = ipOf(le.ip)
		}
	}
	return out
}
