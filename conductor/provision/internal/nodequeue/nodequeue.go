// Package nodequeue runs the jobs of each node one after the other, each
// node in a goroutine of its own while it has work: two jobs of one node
// never overlap, jobs of different nodes run at once. A goroutine whose
// node has no work left waits a while for another node's (see
// Config.IdleWorkers), so that a storm of short jobs does not start, and
// grow the stack of, a goroutine for each. A job submitted while an
// equivalent one is pending can be merged into it (heartbeats
// and progress polls need doing once, not once per submission). Each job
// runs under a context of its own, so that a node's work can be stopped
// (Stop) without touching the others'.
package nodequeue

import (
	"context"
	"sync"
	"time"
)

// Defaults of Config's idle-worker settings.
const (
	// DefaultIdleWorkers bounds the goroutines waiting for work. A job
	// that reaches the store and the agent's API runs deep (SQLite's
	// engine, TLS, HTTP), and a new goroutine grows its stack there by
	// copying it several times; in a boot storm that was 3 % of the
	// conductor's CPU. The bound keeps what idle goroutines hold small
	// (their stacks, tens of KiB each) after a burst of thousands.
	DefaultIdleWorkers = 64
	// DefaultIdleLinger is how long an idle goroutine waits for work.
	DefaultIdleLinger = 10 * time.Second
)

// Job is what a node has to do; its meaning is the caller's.
type Job int

// Config configures a Queue.
type Config struct {
	// Run does one job of one node; ctx ends when the queue closes or
	// Stop cancels the job (context.Cause then says why).
	Run func(ctx context.Context, node string, job Job)
	// Merge, when set, is asked for each pending job of the node whether
	// a new job folds into it: it returns the job that stands for both
	// and true, or false to queue the new job as well.
	Merge func(pending, job Job) (Job, bool)
	// IdleWorkers bounds the goroutines kept waiting for work after
	// their node's ran out (DefaultIdleWorkers when zero; negative keeps
	// none).
	IdleWorkers int
	// IdleLinger is how long such a goroutine waits before it returns
	// (DefaultIdleLinger when zero).
	IdleLinger time.Duration
}

// Queue is the set of node queues.
type Queue struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	nodes  map[string]*worker
	// held counts, per node, the Stops not yet released: while a node is
	// held, jobs submitted for it are dropped.
	held map[string]int
	// idle hands a node's worker to a goroutine waiting for work.
	idle chan assignment
	// waiting counts the goroutines waiting on idle; started counts the
	// goroutines started (for tests).
	waiting, started int
}

// assignment is a node whose jobs a waiting goroutine takes on.
type assignment struct {
	node string
	w    *worker
}

// worker is one node's work: its pending jobs and the running one's
// cancel, run by one goroutine at a time (serve).
type worker struct {
	pending []Job
	// cancel cancels the running job, nil between jobs.
	cancel context.CancelCauseFunc
	// done is closed when the node's work ends (no job left, or the
	// queue closed).
	done chan struct{}
}

// New returns an empty queue whose jobs run under a context derived from
// ctx.
func New(ctx context.Context, cfg Config) *Queue {
	ctx, cancel := context.WithCancel(ctx)
	if cfg.IdleWorkers == 0 {
		cfg.IdleWorkers = DefaultIdleWorkers
	}
	if cfg.IdleLinger <= 0 {
		cfg.IdleLinger = DefaultIdleLinger
	}
	return &Queue{
		cfg: cfg, ctx: ctx, cancel: cancel,
		nodes: map[string]*worker{}, held: map[string]int{},
		idle: make(chan assignment),
	}
}

// Submit queues a job for a node and starts the node's worker if it has
// none. After Close, and while the node is held by Stop, it does nothing
// and reports false.
func (q *Queue) Submit(node string, job Job) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.held[node] > 0 {
		return false
	}
	w, running := q.nodes[node]
	if !running {
		w = &worker{done: make(chan struct{})}
		q.nodes[node] = w
	}
	if q.cfg.Merge != nil {
		for i, p := range w.pending {
			if merged, ok := q.cfg.Merge(p, job); ok {
				w.pending[i] = merged
				return true
			}
		}
	}
	w.pending = append(w.pending, job)
	if !running {
		select {
		case q.idle <- assignment{node, w}:
		default:
			q.started++
			q.wg.Add(1)
			go q.serve(node, w)
		}
	}
	return true
}

// Busy reports whether a node has a job queued or running.
func (q *Queue) Busy(node string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.nodes[node]
	return ok
}

// Stop stops a node's work: its pending jobs are dropped, its running job
// is cancelled with cause, and jobs submitted from now on are dropped
// until release is called. It waits for the running job to return, or
// for ctx to end (then it returns ctx's error; the node stays held until
// release). release must be called exactly once, whatever the error.
func (q *Queue) Stop(ctx context.Context, node string, cause error) (release func(), err error) {
	q.mu.Lock()
	q.held[node]++
	var done chan struct{}
	if w, ok := q.nodes[node]; ok {
		w.pending = nil
		if w.cancel != nil {
			w.cancel(cause)
		}
		done = w.done
	}
	q.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.held[node]--; q.held[node] <= 0 {
				delete(q.held, node)
			}
		})
	}
	if done == nil {
		return release, nil
	}
	select {
	case <-done:
		return release, nil
	case <-ctx.Done():
		return release, ctx.Err()
	}
}

// serve runs a node's jobs, then those of each node handed to it while
// it waits for work, until it has waited IdleLinger in vain, the idle
// goroutines are enough, or the queue closes.
func (q *Queue) serve(node string, w *worker) {
	defer q.wg.Done()
	for {
		q.work(node, w)
		a, ok := q.await()
		if !ok {
			return
		}
		node, w = a.node, a.w
	}
}

// await waits for a node to work for, unless enough goroutines wait
// already.
func (q *Queue) await() (assignment, bool) {
	q.mu.Lock()
	if q.waiting >= q.cfg.IdleWorkers {
		q.mu.Unlock()
		return assignment{}, false
	}
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
	}()
	t := time.NewTimer(q.cfg.IdleLinger)
	defer t.Stop()
	select {
	case a := <-q.idle:
		return a, true
	case <-t.C:
	case <-q.ctx.Done():
	}
	return assignment{}, false
}

// work runs a node's jobs until none is left or the queue closes.
func (q *Queue) work(node string, w *worker) {
	defer close(w.done)
	for {
		q.mu.Lock()
		if len(w.pending) == 0 || q.ctx.Err() != nil {
			delete(q.nodes, node)
			q.mu.Unlock()
			return
		}
		job := w.pending[0]
		w.pending = w.pending[1:]
		ctx, cancel := context.WithCancelCause(q.ctx)
		w.cancel = cancel
		q.mu.Unlock()
		q.cfg.Run(ctx, node, job)
		q.mu.Lock()
		w.cancel = nil
		q.mu.Unlock()
		cancel(nil)
	}
}

// Close cancels the running jobs' context, drops the pending ones and
// waits for the workers to return.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
}

// Context is the context the jobs run under; it ends at Close.
func (q *Queue) Context() context.Context { return q.ctx }
