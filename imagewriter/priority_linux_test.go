package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"golang.org/x/sys/unix"
)

// threadNice reads a thread's nice value from /proc (field 19 of its
// stat); ok is false once the thread is gone.
func threadNice(t *testing.T, tid int) (nice int, ok bool) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) { // gone, or going
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: count from its end.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	nice, err = strconv.Atoi(f[16])
	if err != nil {
		t.Fatalf("thread %d stat %q: %v", tid, b, err)
	}
	return nice, true
}

// threadsAt lists the process's threads whose nice value is nice.
func threadsAt(t *testing.T, nice int) []int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		t.Fatal(err)
	}
	var tids []int
	for _, d := range dirs {
		tid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if n, ok := threadNice(t, tid); ok && n == nice {
			tids = append(tids, tid)
		}
	}
	return tids
}

// waitNoThreadAt waits until no thread of the process runs at nice: a
// locked thread is ended by the runtime after its goroutine has returned.
func waitNoThreadAt(t *testing.T, nice int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tids := threadsAt(t, nice)
		if len(tids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads %v still run at nice %d after their goroutine ended", tids, nice)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("raising a thread's priority needs CAP_SYS_NICE (root)")
	}
}

// stageRun is what a goroutine saw around one prioritizeStage and its
// restore: the thread, its nice value before, during and after, and
// prioritizeStage's error.
type stageRun struct {
	tid, before, during, after int
	err                        error
}

// runStage runs prioritizeStage and restore in a goroutine pinned to one
// thread by a lock of its own (prioritizeStage's nests inside it), so the
// thread's nice value can be read before and after. With startAt set, the
// thread is put at that nice value first, and back where it was at the
// end, before the goroutine lets the thread go.
func runStage(t *testing.T, startAt *int) stageRun {
	t.Helper()
	done := make(chan stageRun)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		s := stageRun{tid: unix.Gettid()}
		orig, _ := threadNice(t, s.tid)
		if startAt != nil {
			if err := unix.Setpriority(unix.PRIO_PROCESS, s.tid, *startAt); err != nil {
				t.Error(err)
			}
			defer func() {
				if err := unix.Setpriority(unix.PRIO_PROCESS, s.tid, orig); err != nil {
					t.Error(err)
				}
			}()
		}
		s.before, _ = threadNice(t, s.tid)
		restore, err := prioritizeStage()
		s.err = err
		s.during, _ = threadNice(t, s.tid)
		restore()
		s.after, _ = threadNice(t, s.tid)
		done <- s
	}()
	return <-done
}

// TestPrioritizeStage: the goroutine that asks runs on a thread at
// decodeNice until it restores it; the thread is then back at the nice
// value it had, and no longer locked by prioritizeStage (it outlives the
// goroutine).
func TestPrioritizeStage(t *testing.T) {
	skipUnlessRoot(t)
	waitNoThreadAt(t, decodeNice)
	s := runStage(t, nil)
	if s.err != nil || s.during != decodeNice || s.after != s.before {
		t.Fatalf("prioritizeStage as root: %v, thread %d at nice %d, then %d after restore; want %d, then %d", s.err, s.tid, s.during, s.after, decodeNice, s.before)
	}
	// Both locks released, the thread outlives the goroutine (a locked
	// one would be ended with it at once).
	time.Sleep(200 * time.Millisecond)
	if n, ok := threadNice(t, s.tid); !ok || n != s.before {
		t.Fatalf("thread %d after the goroutine: nice %d, exists %v; want it back with the runtime at nice %d", s.tid, n, ok, s.before)
	}
}

// TestPrioritizeStageRestoreFails: a thread whose priority cannot be put
// back stays locked, so the runtime ends it with its goroutine, and no
// other goroutine ever runs on it. (The process's main thread, which
// cannot end, would be parked for good instead; the test skips then.)
func TestPrioritizeStageRestoreFails(t *testing.T) {
	// The fake raises nothing, so that a main thread parked for good is
	// not left at the raised priority for the tests after this one.
	orig := setThreadNice
	calls := 0
	setThreadNice = func(n int) error {
		if calls++; calls > 1 {
			return unix.EPERM
		}
		return nil
	}
	t.Cleanup(func() { setThreadNice = orig })
	tidc := make(chan int)
	go func() {
		// Off the main thread, where it can be ended (it may move back
		// before the lock, rarely; the test skips then).
		for i := 0; i < 1000 && unix.Gettid() == os.Getpid(); i++ {
			time.Sleep(time.Millisecond)
		}
		restore, err := prioritizeStage()
		if err != nil {
			t.Error(err)
		}
		restore()
		tidc <- unix.Gettid()
	}()
	tid := <-tidc
	if tid == os.Getpid() {
		t.Skip("the goroutine ran on the main thread, which the runtime parks instead of ending")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := threadNice(t, tid); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d, still locked, outlived its goroutine", tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPrioritizeStageAlreadyHigher: a thread already at decodeNice or
// above is left as it is, and unlocked.
func TestPrioritizeStageAlreadyHigher(t *testing.T) {
	skipUnlessRoot(t)
	higher := decodeNice - 5
	s := runStage(t, &higher)
	if s.err == nil || !strings.Contains(s.err.Error(), fmt.Sprintf("already runs at nice %d", higher)) || s.during != higher || s.after != higher {
		t.Fatalf("prioritizeStage on a thread at nice %d: %v, then at %d and %d; want it left as it is, and told", higher, s.err, s.during, s.after)
	}
}

// TestPrioritizeStageRefused: where the priority cannot be raised, the
// goroutine is not left locked to its thread: the thread outlives it, at
// the priority it had.
func TestPrioritizeStageRefused(t *testing.T) {
	refuseNice(t)
	s := runStage(t, nil)
	if !errors.Is(s.err, unix.EPERM) || s.during != s.before {
		t.Fatalf("prioritizeStage with the priority refused: %v, thread at %d (was %d); want EPERM and no change", s.err, s.during, s.before)
	}
	time.Sleep(200 * time.Millisecond)
	if n, ok := threadNice(t, s.tid); !ok || n != s.before {
		t.Fatalf("thread %d: nice %d, exists %v; want it alive at nice %d", s.tid, n, ok, s.before)
	}
}

func refuseNice(t *testing.T) {
	t.Helper()
	orig := setThreadNice
	setThreadNice = func(int) error { return unix.EPERM }
	t.Cleanup(func() { setThreadNice = orig })
}

// TestWriteDecodesOnAPrioritizedThread writes a zstd image to a loop
// device from a server that pauses halfway through the stream. During the
// pause one thread of the process runs at decodeNice; when the write has
// returned, none does. With the priority refused, the same write succeeds
// at normal priority and says so in the log. Either way the result counts
// the pause as the decode stage's input wait; its thread's CPU is given
// only when the stage had the thread to itself.
func TestWriteDecodesOnAPrioritizedThread(t *testing.T) {
	skipUnlessRoot(t)
	const pause = 200 * time.Millisecond
	img, _ := testImage(t, 8<<20)
	served := compressed(t, FormatZstd, img)
	for _, refused := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused=%v", refused), func(t *testing.T) {
			if refused {
				refuseNice(t)
			}
			waitNoThreadAt(t, decodeNice)
			paused, resume := make(chan struct{}), make(chan struct{})
			srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(served)))
				half := len(served) / 2
				w.Write(served[:half])
				w.(http.Flusher).Flush()
				close(paused)
				select {
				case <-resume:
				case <-r.Context().Done():
					return
				}
				w.Write(served[half:])
			}))
			logs := &lockedWriter{w: &bytes.Buffer{}}
			loop := loopdev.New(t, 16<<20)
			errc := make(chan error, 1)
			var res *Result
			go func() {
				var err error
				res, err = Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
					Checksum: sha256Of(served), Targets: []string{loop.Path},
					Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
				errc <- err
			}()
			// However this subtest ends, the write ends before the next
			// one starts (it reads setThreadNice).
			var werr error
			finished := false
			finish := func() error {
				if !finished {
					close(resume)
					werr, finished = <-errc, true
				}
				return werr
			}
			t.Cleanup(func() { finish() })
			select {
			case <-paused:
			case err := <-errc:
				errc <- err
				t.Fatalf("the write ended before the server paused: %v", err)
			}
			// The decode stage logs once its thread is set up, whichever
			// way; it then waits for the rest of the stream.
			want := map[bool]string{false: "the decode stage runs on a thread of its own", true: "the decode stage keeps its thread's priority"}[refused]
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no %q in the log 5 s into the pause:\n%s", want, logs.String())
				}
			}
			at := threadsAt(t, decodeNice)
			// The stage has the first half, a few milliseconds of work;
			// then it waits for the rest as long as the server holds it.
			time.Sleep(pause)
			if err := finish(); err != nil {
				t.Fatal(err)
			}
			d := res.Decode
			if d == nil || d.InputWait < pause/2 || d.InputWait > res.Duration || d.OutputWait < 0 || d.OutputWait > res.Duration {
				t.Fatalf("decode stats = %+v over a %v write; want an input wait of about the %v pause", d, res.Duration, pause)
			}
			// Its thread's CPU is measured when the thread is its own:
			// some, and less than the stage's time apart from its waits.
			if own := !refused; own && (d.CPU <= 0 || d.CPU > res.Duration-d.InputWait) || !own && d.CPU != 0 {
				t.Fatalf("decode stage CPU = %v (input wait %v, write %v), with a thread of its own: %v", d.CPU, d.InputWait, res.Duration, own)
			}
			if want := map[bool]int{false: 1, true: 0}[refused]; len(at) != want {
				t.Fatalf("threads at nice %d during the write: %v; want %d", decodeNice, at, want)
			}
			waitNoThreadAt(t, decodeNice)
			if !bytes.Equal(readDevice(t, loop.Path, 0, len(img)), img) {
				t.Fatal("the device does not hold the image")
			}
		})
	}
}
