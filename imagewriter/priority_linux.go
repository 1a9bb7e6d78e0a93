package imagewriter

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// setThreadNice sets the calling thread's nice value (a variable, so that
// a test can refuse it).
var setThreadNice = func(nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}

// prioritizeStage gives the calling goroutine an OS thread of its own at
// nice decodeNice. The goroutine calls restore when the stage ends:
// restore puts the thread's nice value back and hands the thread back to
// the runtime. Should that fail, the thread stays locked, and the runtime
// ends it with the goroutine, so the raised priority never passes to
// another goroutine. Nor do threads the runtime starts meanwhile inherit
// it: a locked thread has the runtime's template thread start them. Where
// the process may not raise a priority (it lacks CAP_SYS_NICE), or where
// the thread already runs at that priority or higher, the goroutine goes
// on as before and err says why.
func prioritizeStage() (restore func(), err error) {
	runtime.LockOSThread()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		runtime.UnlockOSThread()
		return func() {}, err
	}
	before := 20 - prio // the system call's value is 20 - nice
	if before <= decodeNice {
		runtime.UnlockOSThread()
		return func() {}, fmt.Errorf("the thread already runs at nice %d", before)
	}
	if err := setThreadNice(decodeNice); err != nil {
		runtime.UnlockOSThread()
		return func() {}, err
	}
	return func() {
		if setThreadNice(before) == nil {
			runtime.UnlockOSThread()
		}
	}, nil
}

// stageThreadCPU returns the user and system CPU time of the calling
// thread: a stage's own once prioritizeStage has given it the thread.
func stageThreadCPU() (time.Duration, bool) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
