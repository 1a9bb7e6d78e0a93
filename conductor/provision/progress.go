package provision

import (
	"container/list"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// While the agent writes an image, its progress (bytes, rate, ETA) is
// kept in driver_internal_info.deploy_progress for clients to show:
// every heartbeat brings it, and between heartbeats the agent's command
// list is polled (ProgressPollInterval, at most ProgressPollRate polls per
// second over all nodes).

// progressPolls tracks the nodes whose agent writes an image, with the
// time their progress was last refreshed (by a poll or a heartbeat), in
// that order: a tick takes the nodes due from the front, without looking
// at the others (thousands of nodes write at once after a boot storm).
type progressPolls struct {
	interval time.Duration
	rate     int
	now      func() time.Time

	mu sync.Mutex
	// order holds a *pollEntry per writing node, least recently refreshed
	// first; byNode finds a node's element.
	order  list.List
	byNode map[string]*list.Element
}

// pollEntry is a writing node and when its progress was last refreshed.
type pollEntry struct {
	uuid string
	last time.Time
}

func newProgressPolls(interval time.Duration, rate int, now func() time.Time) *progressPolls {
	return &progressPolls{interval: interval, rate: rate, now: now, byNode: map[string]*list.Element{}}
}

// track starts polling a node's write progress (if not yet).
func (p *progressPolls) track(uuid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byNode[uuid]; !ok {
		p.setLocked(uuid, p.now())
	}
}

// tracking reports whether a node's write progress is polled.
func (p *progressPolls) tracking(uuid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.byNode[uuid]
	return ok
}

// stop stops polling a node.
func (p *progressPolls) stop(uuid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.byNode[uuid]; ok {
		p.order.Remove(e)
		delete(p.byNode, uuid)
	}
}

// refreshed records that a writing node's progress was just read (a
// heartbeat brought it), which postpones its next poll.
func (p *progressPolls) refreshed(uuid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byNode[uuid]; ok {
		p.setLocked(uuid, p.now())
	}
}

// setLocked records that node uuid was refreshed at t, keeping the order:
// the node goes after the last one refreshed no later (the back, while
// the clock goes forward).
func (p *progressPolls) setLocked(uuid string, t time.Time) {
	e, ok := p.byNode[uuid]
	if ok {
		p.order.Remove(e)
	}
	mark := p.order.Back()
	for mark != nil && mark.Value.(*pollEntry).last.After(t) {
		mark = mark.Prev()
	}
	entry := &pollEntry{uuid: uuid, last: t}
	if mark == nil {
		e = p.order.PushFront(entry)
	} else {
		e = p.order.InsertAfter(entry, mark)
	}
	p.byNode[uuid] = e
}

// tick is how often the poll schedule is looked at: a fraction of the
// interval, so that polls spread over it, at most every 250 ms.
func (p *progressPolls) tick() time.Duration {
	return max(min(p.interval/4, 250*time.Millisecond), 10*time.Millisecond)
}

// due returns the writing nodes whose progress is older than the poll
// interval, oldest first, as many as the poll rate allows for one tick,
// and marks them refreshed so that the next tick does not pick them again.
func (p *progressPolls) due() []string {
	now := p.now()
	budget := max(1, int(float64(p.rate)*p.tick().Seconds()))
	p.mu.Lock()
	defer p.mu.Unlock()
	var due []string
	for e := p.order.Front(); e != nil && len(due) < budget; e = e.Next() {
		entry := e.Value.(*pollEntry)
		if now.Sub(entry.last) < p.interval {
			break
		}
		due = append(due, entry.uuid)
	}
	for _, uuid := range due {
		p.setLocked(uuid, now)
	}
	return due
}

// progressOf finds the progress in the result of a step's command:
// command_result.progress while it runs, <kind>_result.progress once done.
func progressOf(k *kind, cmd *wire.CommandResult) *wire.Progress {
	if cmd == nil {
		return nil
	}
	var pr wire.ProgressResult
	if err := cmd.DecodeResult(&pr); err == nil && pr.Progress != nil {
		return pr.Progress
	}
	res, err := k.wire.DecodeStepResult(cmd)
	if err != nil || len(res.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(res.Result, &pr); err == nil && pr.Progress != nil {
		return pr.Progress
	}
	return nil
}

// progressMoved reports whether a new write progress differs from the
// stored one in anything but its timestamps, so that an unchanged
// progress is not written again.
func progressMoved(stored, next *wire.Progress) bool {
	if stored == nil {
		return true
	}
	return stored.Phase != next.Phase || stored.BytesRead != next.BytesRead || stored.BytesWritten != next.BytesWritten ||
		stored.BytesSkipped != next.BytesSkipped || stored.TotalBytes != next.TotalBytes
}

// saveProgress stores the progress carried by a write command's result;
// final also records the write timings.
func (r *runner) saveProgress(ctx context.Context, k *kind, uuid string, expect statemachine.State, cmd *wire.CommandResult, final bool) error {
	p := progressOf(k, cmd)
	if p == nil && !final {
		return nil
	}
	_, _, err := r.nodes.update(ctx, uuid, expect, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		if p != nil && (final || progressMoved(info.Image.Progress, p)) {
			info.Image.Progress = p
		}
		if final {
			recordWriteTimings(info, p, r.nodes.now())
		}
		return nil
	})
	return err
}

// pollProgress refreshes the progress of a running write between
// heartbeats (a job); when the write has finished it queues the
// processing a heartbeat would do.
func (r *runner) pollProgress(ctx context.Context, uuid string) {
	n, info, err := r.nodes.read(ctx, uuid)
	var k *kind
	if err == nil {
		k = r.waitingKind(n.ProvisionState)
	}
	if k == nil || k.progress == nil {
		r.jobs.polls.stop(uuid)
		return
	}
	if step, ok := info.Kind(k.wire).Current(); !ok || !k.progress(step) {
		r.jobs.polls.stop(uuid)
		return
	}
	list, err := r.agents.commands(ctx, n, info)
	if err != nil {
		r.log.Debug("progress poll failed", "node", uuid, "error", err)
		return
	}
	cmd := list.Last()
	if cmd == nil || cmd.CommandName != k.wire.ExecuteStepName() {
		return
	}
	if cmd.CommandStatus.Finished() {
		r.jobs.polls.stop(uuid)
		r.jobs.submit(uuid, jobHeartbeat)
		return
	}
	if err := r.saveProgress(ctx, k, uuid, k.waiting, cmd, false); err != nil {
		r.jobs.logError(uuid, "poll", err)
	}
	r.jobs.polls.refreshed(uuid)
}
