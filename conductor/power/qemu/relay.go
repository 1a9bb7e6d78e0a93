package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"
)

// RunRelay copies between stdin/stdout and a TCP connection to host:port
// until either side closes (used as `rivet-conductor relay HOST PORT`, the
// program QEMU's guestfwd runs for each guest connection, with the guest's
// connection as stdin and stdout). When stdin ends, the TCP write side is
// closed and the reply is still copied until the server closes; when the
// server closes, RunRelay returns without waiting for stdin (a read still
// blocked on it is abandoned when the process exits, unless stdin supports
// read deadlines). Cancelling ctx closes the connection.
func RunRelay(ctx context.Context, host, port string, stdin io.Reader, stdout io.Writer) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	up := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stdin)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		up <- err
	}()
	_, downErr := io.Copy(stdout, conn)
	if d, ok := stdin.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now())
	}
	if ctx.Err() != nil {
		return fmt.Errorf("relay %s:%s: %w", host, port, ctx.Err())
	}
	if downErr != nil {
		return fmt.Errorf("relay %s:%s: %w", host, port, downErr)
	}
	return nil
}
