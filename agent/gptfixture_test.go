package agent

import (
	"os"
	"path/filepath"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
)

// protectiveMBRAndGPT returns the first MiB of a disk of size bytes with a
// protective MBR and a GPT of one Linux partition at 1 MiB (go-diskfs
// writes it, the backup at the end is left out).
func protectiveMBRAndGPT(t *testing.T, size int64) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gpt.img")
	d, err := diskfs.Create(p, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*dgpt.Partition{{Index: 1, Start: 2048, End: uint64(size/512) - 2048, Type: dgpt.LinuxFilesystem}}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b[:1<<20]
}
