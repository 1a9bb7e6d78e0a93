package virtualrack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/internal/netns"
)

// Forward listens on addr, a loopback address of the host ("127.0.0.1:0"
// picks a port), and relays every connection to the conductor's API in
// the namespace, until the rack closes. It returns the address it listens
// on. Only loopback is accepted: the API is plain HTTP, and the rack's
// network stays on this host.
func (r *Rack) Forward(addr string) (net.Addr, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("virtualrack: forward %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("virtualrack: forward %q: want a loopback address (127.0.0.1 or ::1)", addr)
	}
	if r.ctx == nil || r.ctx.Err() != nil {
		return nil, fmt.Errorf("virtualrack: forward %q: the rack is closed", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("virtualrack: forward: %w", err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		relay(r.ctx, ln, netns.Dialer(r.Netns), r.apiAddr())
	}()
	r.log.Info("API forwarded", "from", ln.Addr().String(), "to", r.APIURL)
	return ln.Addr(), nil
}

// dialFunc dials an address.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// relay accepts connections on ln until ctx ends and copies each, both
// ways, to a connection dial makes to target. It closes ln and waits for
// its connections to end.
func relay(ctx context.Context, ln net.Listener, dial dialFunc, target string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// A transient accept error (out of descriptors): back off.
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			relayConn(ctx, c, dial, target)
		}()
	}
}

// relayConn copies between c and a new connection to target until either
// side ends or ctx does.
func relayConn(ctx context.Context, c net.Conn, dial dialFunc, target string) {
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	up, err := dial(dctx, "tcp", target)
	cancel()
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}
