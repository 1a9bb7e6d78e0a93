//go:build !linux

package agent

import "errors"

// kernelLog is Linux only.
func kernelLog() ([]byte, error) { return nil, errors.New("no kernel log off Linux") }
