package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// asfPing is an RMCP presence ping (ASF 2.0 §3.2.4.1): RMCP header
// (version 6, sequence 0xff = no ACK, class ASF), IANA 4542, type 0x80
// (ping), tag, no data.
var asfPing = []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}

// Ping sends an RMCP presence ping to addr (host:port) and waits up to
// wait for the pong.
func Ping(ctx context.Context, addr string, wait time.Duration) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("rmcp ping %s: %w", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(asfPing); err != nil {
		return fmt.Errorf("rmcp ping %s: %w", addr, err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return fmt.Errorf("rmcp ping %s: %w", addr, err)
	}
	// A pong: RMCP class ASF, message type 0x40.
	if n < 9 || buf[3]&0x0f != 0x06 || buf[8] != 0x40 {
		return errors.New("rmcp ping " + addr + ": not a pong")
	}
	return nil
}
