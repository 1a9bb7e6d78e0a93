package vmtest

import "time"

// Started is when QEMU was started: WaitFor's durations count from it, so
// a host-side event (a request the guest made) can be put on the same
// clock as the console lines.
func (vm *VM) Started() time.Time { return vm.started }
