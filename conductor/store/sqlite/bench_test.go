package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rivetmetal/rivet/conductor/store"
)

// benchStore is a store with nodes nodes, each with a port.
func benchStore(b *testing.B, nodes int) (*Store, []string) {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "rivet.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ids := make([]string, nodes)
	for i := range ids {
		n := &store.Node{Name: fmt.Sprintf("n%d", i), Driver: "fake-hardware",
			InstanceInfo:       map[string]any{"image_source": "http://127.0.0.1/disk.raw", "image_os_hash_value": "ab"},
			DriverInternalInfo: map[string]any{"agent_url": "http://127.0.0.1:9999", "agent_secret_token": "t"}}
		if err := s.CreateNode(ctx, n); err != nil {
			b.Fatal(err)
		}
		if err := s.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff)}); err != nil {
			b.Fatal(err)
		}
		ids[i] = n.UUID
	}
	return s, ids
}

// BenchmarkNodeUpdate is one committed node transaction (a heartbeat
// record or a progress save), from 32 callers per CPU on different nodes,
// as a busy conductor's requests and jobs are.
func BenchmarkNodeUpdate(b *testing.B) {
	s, ids := benchStore(b, 256)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			err := s.WithNodeLock(ctx, ids[int(i)%len(ids)], func(tx store.Tx) error {
				tx.Node().SetInternal("agent_last_heartbeat", fmt.Sprint(i))
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetNode is a read of a node by UUID, from parallel callers,
// with the node's row in the file only, in the row cache's decoded tier,
// or in its text tier (the decoded tier holding one row; in a boot storm,
// a node whose row the decoded tier dropped is read this way).
func BenchmarkGetNode(b *testing.B) {
	for _, c := range []struct {
		from          string
		write         bool // each node written once, its row put in the cache
		decodedRoom   bool // the decoded tier bounded at one such row
		decoded, text int  // rows each tier then holds, of 256
	}{
		{from: "file"},
		{from: "decoded", write: true, decoded: 256},
		{from: "text", write: true, decodedRoom: true, decoded: 1, text: 255},
	} {
		b.Run(c.from, func(b *testing.B) {
			s, ids := benchStore(b, 256)
			ctx := context.Background()
			written := ids
			if !c.write {
				written = nil
			}
			for i, id := range written {
				if err := s.WithNodeLock(ctx, id, func(tx store.Tx) error {
					tx.Node().SetInternal("agent_last_heartbeat", fmt.Sprint(i))
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				if i == 0 && c.decodedRoom {
					s.rows.mu.Lock()
					s.rows.max = s.rows.size * 3 / 2
					s.rows.mu.Unlock()
				}
			}
			s.rows.mu.Lock()
			decoded, text := len(s.rows.rows), len(s.rows.texts)
			s.rows.mu.Unlock()
			if decoded != c.decoded || text != c.text {
				b.Fatalf("tiers hold %d decoded and %d text rows, want %d and %d", decoded, text, c.decoded, c.text)
			}
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.GetNode(ctx, ids[int(next.Add(1))%len(ids)]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkNodeByMACs is the lookup's read.
func BenchmarkNodeByMACs(b *testing.B) {
	s, _ := benchStore(b, 256)
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1)) % 256
			if _, err := s.NodeByMACs(ctx, []string{fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff), "00:00:00:00:00:01"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
