//go:build !linux

package erase

import (
	"context"

	"github.com/rivetmetal/rivet/hardware"
)

// nvmeFormat is unsupported off Linux.
func nvmeFormat(context.Context, hardware.BlockDevice) (string, error) { return "", errUnsupported }

// ataSecureErase is unsupported off Linux.
func ataSecureErase(context.Context, hardware.BlockDevice) (string, error) { return "", errUnsupported }
