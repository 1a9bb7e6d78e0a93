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

// BenchmarkGetNode is a read of a node by UUID, from parallel callers.
func BenchmarkGetNode(b *testing.B) {
	s, ids := benchStore(b, 256)
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetNode(ctx, ids[int(next.Add(1))%len(ids)]); err != nil {
				b.Fatal(err)
			}
		}
	})
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
