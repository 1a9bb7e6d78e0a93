//go:build !linux

package imagewriter

import "errors"

// prioritizeStage leaves the decode stage at normal priority where threads
// cannot be given a nice value of their own.
func prioritizeStage() (restore func(), err error) {
	return func() {}, errors.New("thread priorities are Linux-only")
}
