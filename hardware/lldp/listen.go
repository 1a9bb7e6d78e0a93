package lldp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultTimeout is how long Listen waits when Listener.Timeout is zero:
// IPA's ipa-lldp-timeout default, and the interval at which switches send
// LLDP unless configured otherwise.
const DefaultTimeout = 30 * time.Second

// Listener hears LLDP on the machine's interfaces. The zero value waits
// DefaultTimeout and logs to slog.Default().
type Listener struct {
	// Timeout bounds the whole wait, for all interfaces together (IPA
	// restarts its wait after every frame). Zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives what happens on each interface. Nil:
	// slog.Default().
	Logger *slog.Logger

	// open is the raw-socket seam for tests; nil means openPort.
	open func(name string, log *slog.Logger) (port, error)
}

// Result is what one interface heard.
type Result struct {
	// Interface is the interface's name.
	Interface string
	// TLVs are those of the first well-formed LLDP frame received, End
	// TLV included; nil when none arrived before the timeout.
	TLVs []TLV
	// Err is set when the interface could not be listened on or read, or
	// the context ended first.
	Err error
}

// port is one interface's LLDP socket.
type port interface {
	// ReadFrame reads one frame into b, which is MaxFrameSize+1 long, so
	// that a frame the filter let through oversized is detected.
	ReadFrame(b []byte) (int, error)
	// SetReadDeadline makes a blocked or later ReadFrame return
	// os.ErrDeadlineExceeded at t.
	SetReadDeadline(t time.Time) error
	// Close closes the socket and puts the link back as it was found.
	Close() error
}

// Listen listens on every named interface at once and returns one Result
// per name, in order, once each has heard a frame, the timeout has passed
// or ctx has ended. The sockets are opened on the calling goroutine, so
// they belong to the network namespace of its thread. An interface that
// is down is brought up for the wait and put down again afterwards.
func (l Listener) Listen(ctx context.Context, names []string) []Result {
	if len(names) == 0 {
		return nil
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	open := l.open
	if open == nil {
		open = openPort
	}
	results := make([]Result, len(names))
	ports := make([]port, len(names))
	for i, name := range names {
		results[i].Interface = name
		p, err := open(name, log)
		if err != nil {
			results[i].Err = err
			log.WarnContext(ctx, "LLDP: cannot listen on the interface", "interface", name, "error", err)
			continue
		}
		ports[i] = p
	}
	deadline := time.Now().Add(timeout)
	log.InfoContext(ctx, "LLDP: waiting for a frame on each interface", "interfaces", names, "timeout", timeout)

	var wg sync.WaitGroup
	for i, p := range ports {
		if p != nil {
			wg.Go(func() { results[i].TLVs, results[i].Err = receive(ctx, p, names[i], deadline, log) })
		}
	}
	wg.Wait()
	for i, p := range ports {
		if p == nil {
			continue
		}
		if err := p.Close(); err != nil {
			log.WarnContext(ctx, "LLDP: closing the interface's socket", "interface", names[i], "error", err)
		}
	}
	var silent []string
	for _, r := range results {
		if r.Err == nil && r.TLVs == nil {
			silent = append(silent, r.Interface)
		}
	}
	if len(silent) > 0 {
		log.WarnContext(ctx, "LLDP: no frame before the timeout", "interfaces", silent, "timeout", timeout)
	}
	return results
}

// receive reads frames from p until a well-formed LLDP frame arrives (its
// TLVs), the deadline passes (nil, nil) or ctx ends. Malformed frames are
// dropped: the first is logged, the rest counted.
func receive(ctx context.Context, p port, name string, deadline time.Time, log *slog.Logger) ([]TLV, error) {
	if err := p.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("lldp: %s: set the read deadline: %w", name, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, MaxFrameSize+1)
	dropped := 0
	defer func() {
		if dropped > 1 {
			log.WarnContext(ctx, "LLDP: malformed frames dropped", "interface", name, "frames", dropped)
		}
	}()
	for {
		n, err := p.ReadFrame(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("lldp: %s: %w", name, context.Cause(ctx))
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil
			}
			return nil, fmt.Errorf("lldp: read from %s: %w", name, err)
		}
		frame := buf[:n]
		if n > MaxFrameSize {
			frame = buf // ParseFrame reports it as oversized
		}
		if !wellFormed(frame) {
			dropped++
			if dropped == 1 {
				_, err := ParseFrame(frame)
				log.WarnContext(ctx, "LLDP: malformed frame dropped; still listening", "interface", name, "bytes", n, "error", err)
			}
			continue
		}
		// Keep only the frame's own bytes, not the whole read buffer.
		tlvs, err := ParseFrame(bytes.Clone(frame))
		if err != nil {
			return nil, fmt.Errorf("lldp: %s: %w", name, err) // cannot happen: wellFormed checked these bytes
		}
		log.InfoContext(ctx, "LLDP: frame received", "interface", name, "bytes", n, "tlvs", len(tlvs))
		return tlvs, nil
	}
}
