package changefeed

import (
	"fmt"
	"sync"
	"testing"
)

func TestHubCoalescesPerKeyInFirstPendingOrder(t *testing.T) {
	h := NewHub[int](10)
	s := h.Subscribe()
	defer s.Close()
	h.Publish("a", 1)
	h.Publish("b", 1)
	h.Publish("a", 2)
	seq := h.Publish("c", 1)
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready not signalled")
	}
	items, resync := s.Take()
	if resync {
		t.Fatal("unexpected resync")
	}
	got := fmt.Sprint(items)
	want := fmt.Sprint([]Item[int]{{3, "a", 2}, {2, "b", 1}, {4, "c", 1}})
	if got != want {
		t.Fatalf("items = %s, want %s", got, want)
	}
	if s.Seq() != seq {
		t.Fatalf("Seq = %d, want %d", s.Seq(), seq)
	}
	if items, _ := s.Take(); len(items) != 0 {
		t.Fatalf("second Take = %v, want nothing", items)
	}
}

func TestHubOverflowTurnsIntoResync(t *testing.T) {
	h := NewHub[string](3)
	slow := h.Subscribe()
	defer slow.Close()
	roomy := h.SubscribeLimit(100)
	defer roomy.Close()
	for i := range 10 {
		h.Publish(fmt.Sprint("k", i), "v")
	}
	items, resync := slow.Take()
	if !resync || len(items) != 0 {
		t.Fatalf("slow subscriber: %d items, resync %v; want a resync", len(items), resync)
	}
	if slow.Resyncs() != 1 {
		t.Fatalf("Resyncs = %d, want 1", slow.Resyncs())
	}
	// After the resync the subscription queues again.
	h.Publish("k0", "w")
	items, resync = slow.Take()
	if resync || len(items) != 1 || items[0].Value != "w" {
		t.Fatalf("after resync: %v %v", items, resync)
	}
	items, resync = roomy.Take()
	if resync || len(items) != 10 {
		t.Fatalf("roomy subscriber: %d items, resync %v", len(items), resync)
	}
}

func TestHubResyncAllAndClose(t *testing.T) {
	h := NewHub[int](0)
	a, b := h.Subscribe(), h.Subscribe()
	if h.Subscribers() != 2 {
		t.Fatalf("Subscribers = %d", h.Subscribers())
	}
	h.Publish("x", 1)
	h.ResyncAll()
	for _, s := range []*Subscription[int]{a, b} {
		if items, resync := s.Take(); !resync || len(items) != 0 {
			t.Fatalf("after ResyncAll: %v %v", items, resync)
		}
	}
	b.Close()
	if h.Subscribers() != 1 {
		t.Fatalf("Subscribers after Close = %d", h.Subscribers())
	}
	h.Publish("x", 2)
	if items, _ := b.Take(); len(items) != 0 {
		t.Fatalf("closed subscription got %v", items)
	}
	a.Close()
}

// A subscriber that never reads holds at most one value per key, and the
// publishers never wait for it.
func TestHubSlowSubscriberNeverBlocksPublishers(t *testing.T) {
	h := NewHub[int](1000)
	s := h.Subscribe()
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				h.Publish(fmt.Sprint("node", (w*5000+i)%50), i)
			}
		}()
	}
	wg.Wait()
	items, resync := s.Take()
	if resync || len(items) != 50 {
		t.Fatalf("%d items (resync %v), want one per key (50)", len(items), resync)
	}
}
