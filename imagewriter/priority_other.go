//go:build !linux

package imagewriter

import (
	"errors"
	"time"
)

// prioritizeStage leaves the decode stage at normal priority where threads
// cannot be given a nice value of their own.
func prioritizeStage() (restore func(), err error) {
	return func() {}, errors.New("thread priorities are Linux-only")
}

// stageThreadCPU is not measured where stages have no thread of their own.
func stageThreadCPU() (time.Duration, bool) { return 0, false }
