package qemu

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"

	"github.com/rivetmetal/rivet/conductor/power"
)

// ErrUnreachable is returned by NodeURL for a URL a QEMU node cannot reach:
// with restrict=on user networking only forwarded loopback ports are
// reachable.
var ErrUnreachable = errors.New("not reachable from a qemu node (only the conductor host's loopback is forwarded)")

// NodeURL implements power.NodeView. A node on qemu_bridge gets the URL
// unchanged. For user networking, a URL on the host's loopback
// (127.0.0.1, localhost or ::1) becomes the same URL at GuestHost, and its
// port is recorded so that the node's next power on forwards it: call it
// before powering the node on. Any other URL is returned unchanged with an
// error wrapping ErrUnreachable.
func (d *Driver) NodeURL(node power.Node, hostURL string) (string, error) {
	s, err := d.settings(node)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(hostURL)
	if err != nil {
		return "", fmt.Errorf("qemu: node %s: URL %q: %w", node.UUID, hostURL, err)
	}
	if s.bridge != "" {
		// On a bridge the node is on a real network: it reaches what the
		// network routes, with no translation.
		return hostURL, nil
	}
	var target string
	switch u.Hostname() {
	case "127.0.0.1", "localhost":
		target = "127.0.0.1"
	case "::1":
		target = "::1"
	default:
		return hostURL, fmt.Errorf("qemu: node %s: %s: %w", node.UUID, hostURL, ErrUnreachable)
	}
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			return "", fmt.Errorf("qemu: node %s: URL %q has no port", node.UUID, hostURL)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("qemu: node %s: URL %q: bad port", node.UUID, hostURL)
	}
	if err := d.addForward(node.UUID, s, forward{Port: n, Target: target}); err != nil {
		return "", err
	}
	out := *u
	out.Host = net.JoinHostPort(d.guestHost.String(), port)
	return out.String(), nil
}

// addForward records a guestfwd for the node's next power on.
func (d *Driver) addForward(uuid string, s settings, f forward) error {
	e := d.entry(uuid)
	e.mu.Lock()
	defer e.mu.Unlock()
	p := d.pathsFor(uuid, s)
	st, err := loadState(p)
	if err != nil {
		return fmt.Errorf("qemu: node %s: %w", uuid, err)
	}
	i := slices.IndexFunc(st.Forwards, func(g forward) bool { return g.Port == f.Port })
	if i >= 0 && st.Forwards[i] == f {
		return nil
	}
	if i >= 0 {
		st.Forwards[i] = f
	} else {
		st.Forwards = append(st.Forwards, f)
	}
	if err := saveState(p, st); err != nil {
		return fmt.Errorf("qemu: node %s: record forward: %w", uuid, err)
	}
	if on, _ := d.running(e, uuid, p); on {
		d.log.Warn("new guest forward applies at the next power on", "node", uuid, "port", f.Port)
	}
	return nil
}
