package testimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// buildInit compiles pkg into a static linux/amd64 (x86-64-v1) binary at out.
func buildInit(ctx context.Context, moduleDir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testimage: go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
