// Command relay copies its stdin and stdout to and from a TCP address. QEMU
// user networking runs it once per guest connection (guestfwd=…-cmd:relay
// HOST PORT) so that a VM under restrict=on reaches one host port: the
// Ironic API, or the test's image proxy.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: relay HOST PORT")
		os.Exit(2)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(os.Args[1], os.Args[2]), 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(conn, os.Stdin)
		conn.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		io.Copy(os.Stdout, conn)
		os.Stdout.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
	conn.Close()
}
