// Package nodequeue runs the jobs of each node one after the other, each
// node in a goroutine of its own while it has work: two jobs of one node
// never overlap, jobs of different nodes run at once. A job submitted
// while an equivalent one is pending can be merged into it (heartbeats
// and progress polls need doing once, not once per submission).
package nodequeue

import (
	"context"
	"sync"
)

// Job is what a node has to do; its meaning is the caller's.
type Job int

// Config configures a Queue.
type Config struct {
	// Run does one job of one node; ctx ends when the queue closes.
	Run func(ctx context.Context, node string, job Job)
	// Merge, when set, is asked for each pending job of the node whether
	// a new job folds into it: it returns the job that stands for both
	// and true, or false to queue the new job as well.
	Merge func(pending, job Job) (Job, bool)
}

// Queue is the set of node queues.
type Queue struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	nodes  map[string]*[]Job
}

// New returns an empty queue whose jobs run under a context derived from
// ctx.
func New(ctx context.Context, cfg Config) *Queue {
	ctx, cancel := context.WithCancel(ctx)
	return &Queue{cfg: cfg, ctx: ctx, cancel: cancel, nodes: map[string]*[]Job{}}
}

// Submit queues a job for a node and starts the node's worker if it has
// none. After Close it does nothing.
func (q *Queue) Submit(node string, job Job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	pending, running := q.nodes[node]
	if !running {
		pending = &[]Job{}
		q.nodes[node] = pending
	}
	if q.cfg.Merge != nil {
		for i, p := range *pending {
			if merged, ok := q.cfg.Merge(p, job); ok {
				(*pending)[i] = merged
				return
			}
		}
	}
	*pending = append(*pending, job)
	if !running {
		q.wg.Add(1)
		go q.worker(node, pending)
	}
}

// Busy reports whether a node has a job queued or running.
func (q *Queue) Busy(node string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.nodes[node]
	return ok
}

// worker runs a node's jobs until none is left or the queue closes.
func (q *Queue) worker(node string, pending *[]Job) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if len(*pending) == 0 || q.ctx.Err() != nil {
			delete(q.nodes, node)
			q.mu.Unlock()
			return
		}
		job := (*pending)[0]
		*pending = (*pending)[1:]
		q.mu.Unlock()
		q.cfg.Run(q.ctx, node, job)
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
