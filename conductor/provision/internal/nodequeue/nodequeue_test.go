package nodequeue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestJobsOfANodeRunInOrderAndMerge: a node's jobs run one after the
// other in the order given, and a mergeable job folds into a pending one.
func TestJobsOfANodeRunInOrderAndMerge(t *testing.T) {
	var (
		mu   sync.Mutex
		ran  = map[string][]Job{}
		gate = make(chan struct{})
		done = make(chan struct{}, 10)
	)
	q := New(context.Background(), Config{
		Run: func(ctx context.Context, node string, job Job) {
			if node == "a" && job == 0 {
				<-gate // hold the node's first job until the rest are queued
			}
			mu.Lock()
			ran[node] = append(ran[node], job)
			mu.Unlock()
			done <- struct{}{}
		},
		Merge: func(pending, job Job) (Job, bool) {
			if pending >= 10 && job >= 10 {
				return max(pending, job), true
			}
			return 0, false
		},
	})
	defer q.Close()
	q.Submit("a", 0)
	for _, j := range []Job{1, 10, 11, 2, 12} {
		q.Submit("a", j)
	}
	q.Submit("b", 1)
	if !q.Busy("a") {
		t.Fatal("node a is not busy")
	}
	close(gate)
	for range 5 { // a: 0, 1, 12, 2; b: 1
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ran["a"], []Job{0, 1, 12, 2}) || !slices.Equal(ran["b"], []Job{1}) {
		t.Fatalf("ran %v", ran)
	}
}

// TestCloseCancelsAndDrops: Close cancels the running job's context,
// waits for it, drops the pending jobs and refuses new ones.
func TestCloseCancelsAndDrops(t *testing.T) {
	started := make(chan struct{})
	var ran []Job
	q := New(context.Background(), Config{Run: func(ctx context.Context, _ string, job Job) {
		ran = append(ran, job)
		if job == 1 {
			close(started)
			<-ctx.Done()
		}
	}})
	q.Submit("a", 1)
	q.Submit("a", 2)
	<-started
	q.Close()
	if !slices.Equal(ran, []Job{1}) || q.Busy("a") {
		t.Fatalf("ran %v, busy %v", ran, q.Busy("a"))
	}
	q.Submit("a", 3)
	if q.Busy("a") {
		t.Error("a job was queued after Close")
	}
}

// TestStopCancelsDropsAndHolds: Stop cancels the node's running job with
// its cause and waits for it, drops its pending jobs, refuses new ones
// until released, and leaves other nodes alone.
func TestStopCancelsDropsAndHolds(t *testing.T) {
	cause := errors.New("deleted")
	var (
		mu     sync.Mutex
		ran    []string
		causes []error
	)
	started := make(chan string, 4)
	stopB := make(chan struct{})
	q := New(context.Background(), Config{Run: func(ctx context.Context, node string, job Job) {
		mu.Lock()
		ran = append(ran, fmt.Sprintf("%s%d", node, job))
		mu.Unlock()
		started <- node
		if node == "b" {
			<-stopB
			return
		}
		if job == 1 {
			<-ctx.Done()
			mu.Lock()
			causes = append(causes, context.Cause(ctx))
			mu.Unlock()
		}
	}})
	defer q.Close()
	q.Submit("a", 1)
	q.Submit("a", 2)
	q.Submit("b", 1)
	<-started
	<-started
	release, err := q.Stop(context.Background(), "a", cause)
	if err != nil {
		t.Fatal(err)
	}
	if q.Busy("a") {
		t.Fatal("a still busy after Stop returned")
	}
	if q.Submit("a", 3) {
		t.Fatal("a job was queued while the node was held")
	}
	release()
	release() // once only
	if !q.Submit("a", 4) {
		t.Fatal("a job was refused after release")
	}
	<-started
	for q.Busy("a") {
		time.Sleep(time.Millisecond)
	}
	if !q.Busy("b") {
		t.Fatal("Stop of a stopped b")
	}
	close(stopB)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"a1", "b1", "a4"}; !slices.Equal(sortedFirstTwo(ran), want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
	if len(causes) != 1 || !errors.Is(causes[0], cause) {
		t.Fatalf("causes %v", causes)
	}
}

// sortedFirstTwo orders the first two entries (two nodes' first jobs run
// at once).
func sortedFirstTwo(s []string) []string {
	out := slices.Clone(s)
	if len(out) >= 2 {
		slices.Sort(out[:2])
	}
	return out
}

// TestStopIsBoundedByItsContext: a job that ignores cancellation makes
// Stop return its context's error; the node stays held until released.
func TestStopIsBoundedByItsContext(t *testing.T) {
	unblock := make(chan struct{})
	started := make(chan struct{})
	q := New(context.Background(), Config{Run: func(ctx context.Context, node string, job Job) {
		close(started)
		<-unblock
	}})
	defer q.Close()
	q.Submit("a", 1)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	release, err := q.Stop(ctx, "a", errors.New("bye"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v", err)
	}
	if q.Submit("a", 2) {
		t.Fatal("queued while held")
	}
	close(unblock)
	release()
	if release, err := q.Stop(context.Background(), "idle-node", nil); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
}

// counts returns the queue's started and waiting goroutines.
func counts(q *Queue) (started, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.started, q.waiting
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleGoroutineTakesTheNextNode: the goroutine that ran one node's
// jobs runs the next node's instead of a new one being started, and
// returns once it has waited IdleLinger in vain.
func TestIdleGoroutineTakesTheNextNode(t *testing.T) {
	done := make(chan string, 4)
	q := New(context.Background(), Config{
		Run:        func(_ context.Context, node string, _ Job) { done <- node },
		IdleLinger: 2 * time.Second, // long beside the test's steps, short to wait for
	})
	defer q.Close()
	for _, node := range []string{"a", "b", "c"} {
		q.Submit(node, 1)
		if got := <-done; got != node {
			t.Fatalf("ran %s, want %s", got, node)
		}
		waitFor(t, "the goroutine to wait for work", func() bool { _, w := counts(q); return w == 1 })
	}
	if started, _ := counts(q); started != 1 {
		t.Fatalf("%d goroutines started for three nodes one after the other, want 1", started)
	}
	waitFor(t, "the idle goroutine to return", func() bool { _, w := counts(q); return w == 0 })
	q.Submit("d", 1)
	<-done
	if started, _ := counts(q); started != 2 {
		t.Fatalf("%d goroutines started, want 2 (the idle one had returned)", started)
	}
}

// TestIdleGoroutinesAreBounded: after a burst of nodes at once, no more
// than IdleWorkers goroutines wait for work, and Close ends them.
func TestIdleGoroutinesAreBounded(t *testing.T) {
	const nodes, idle = 20, 3
	gate := make(chan struct{})
	var running sync.WaitGroup
	running.Add(nodes)
	q := New(context.Background(), Config{
		Run:         func(context.Context, string, Job) { running.Done(); <-gate },
		IdleWorkers: idle,
		IdleLinger:  time.Hour,
	})
	for i := range nodes {
		q.Submit(fmt.Sprint(i), 1)
	}
	running.Wait() // every node's job runs at once: one goroutine each
	if started, _ := counts(q); started != nodes {
		t.Fatalf("%d goroutines started for %d nodes at once", started, nodes)
	}
	close(gate)
	waitFor(t, "the nodes' work to end", func() bool {
		for i := range nodes {
			if q.Busy(fmt.Sprint(i)) {
				return false
			}
		}
		return true
	})
	waitFor(t, "the goroutines to settle", func() bool { _, w := counts(q); return w == idle })
	time.Sleep(20 * time.Millisecond)
	if _, w := counts(q); w != idle {
		t.Fatalf("%d goroutines wait for work, want %d", w, idle)
	}
	closed := make(chan struct{})
	go func() { q.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the idle goroutines")
	}
	if _, w := counts(q); w != 0 {
		t.Fatalf("%d goroutines still wait after Close", w)
	}
}
