//go:build !linux

package netns

import (
	"context"
	"errors"
	"net"
)

// Dir is where iproute2 keeps named namespaces.
const Dir = "/run/netns"

var errUnsupported = errors.New("netns: network namespaces are Linux only")

// Add fails: network namespaces are Linux only.
func Add(context.Context, string) (string, error) { return "", errUnsupported }

// Delete fails: network namespaces are Linux only.
func Delete(string) error { return errUnsupported }

// Do fails: network namespaces are Linux only.
func Do(string, func() error) error { return errUnsupported }

// Dialer returns a dial function that fails: network namespaces are Linux only.
func Dialer(string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errUnsupported }
}
