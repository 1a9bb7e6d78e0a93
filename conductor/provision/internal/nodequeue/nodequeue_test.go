package nodequeue

import (
	"context"
	"slices"
	"sync"
	"testing"
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
