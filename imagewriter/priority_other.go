//go:build !linux

package imagewriter

import "errors"

// decodeNice is the nice value the decode stage runs at on Linux.
const decodeNice = -10

// prioritizeStage leaves the decode stage at normal priority where threads
// cannot be given a nice value of their own.
func prioritizeStage() (restore func(), err error) {
	return func() {}, errors.New("thread priorities are Linux-only")
}
