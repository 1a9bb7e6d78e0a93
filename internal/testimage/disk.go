package testimage

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

const (
	sectorSize = 512
	// espStart is the ESP's first sector (1 MiB, the usual alignment).
	espStart = 2048
	// tailBytes is left after the ESP for the backup GPT (1 MiB).
	tailBytes = 1 << 20
	// mbrSignatureOffset is where the MBR keeps its 32-bit disk signature.
	mbrSignatureOffset = 440
)

// espFile is a file copied onto the ESP.
type espFile struct {
	src, dst string
}

// layout is the image's partitioning, derived from the id so that the same
// id always yields the same GUIDs and disk signature.
type layout struct {
	size          int64
	diskGUID      string
	espGUID       string
	diskSignature uint32
}

func layoutFor(id string, size int64) layout {
	ns := uuid.MustParse("6f0b7a52-4a0c-4b8e-9a57-72697665746d") // Rivet test images
	sum := sha256.Sum256([]byte("rivet-testimage/" + id))
	sig := binary.LittleEndian.Uint32(sum[:4])
	if sig == 0 {
		sig = 0x52495654 // "RIVT"
	}
	return layout{
		size:          size,
		diskGUID:      uuid.NewSHA1(ns, []byte(id+"/disk")).String(),
		espGUID:       uuid.NewSHA1(ns, []byte(id+"/esp")).String(),
		diskSignature: sig,
	}
}

// espSectors is the ESP's size in sectors.
func (l layout) espSectors() uint64 {
	return uint64(l.size-espStart*sectorSize-tailBytes) / sectorSize
}

// writeDisk creates the raw image at path: GPT with one FAT32 ESP holding
// files, and the disk signature in the protective MBR.
func writeDisk(path string, l layout, files []espFile) (err error) {
	d, err := diskfs.Create(path, l.size, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("testimage: create %s: %w", path, err)
	}
	defer func() {
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("testimage: close %s: %w", path, cerr))
		}
	}()
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               l.diskGUID,
		Partitions: []*gpt.Partition{{
			Index: 1,
			Start: espStart,
			End:   espStart + l.espSectors() - 1,
			Type:  gpt.EFISystemPartition,
			Name:  "EFI System Partition",
			GUID:  l.espGUID,
		}},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("testimage: partition %s: %w", path, err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition:    1,
		FSType:       filesystem.TypeFat32,
		VolumeLabel:  "RIVET-ESP",
		Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("testimage: mkfs.fat32 on %s: %w", path, err)
	}
	for _, f := range files {
		if err := copyToFS(fs, f); err != nil {
			return fmt.Errorf("testimage: %s: %w", path, err)
		}
	}
	rw, err := d.Backend.Writable()
	if err != nil {
		return fmt.Errorf("testimage: %s: %w", path, err)
	}
	if err := fixRootDotDot(rw, rw, espStart*sectorSize); err != nil {
		return fmt.Errorf("testimage: %s: %w", path, err)
	}
	var sig [4]byte
	binary.LittleEndian.PutUint32(sig[:], l.diskSignature)
	if _, err := rw.WriteAt(sig[:], mbrSignatureOffset); err != nil {
		return fmt.Errorf("testimage: write disk signature to %s: %w", path, err)
	}
	return nil
}

// copyToFS copies one host file into the FAT filesystem, creating parents.
func copyToFS(fs filesystem.FileSystem, f espFile) error {
	if dir := path.Dir(f.dst); dir != "/" {
		if err := fs.Mkdir(dir); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	src, err := os.Open(f.src)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := fs.OpenFile(f.dst, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s on the ESP: %w", f.dst, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s to %s on the ESP: %w", f.src, f.dst, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("close %s on the ESP: %w", f.dst, err)
	}
	return nil
}
