package testimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Build builds the image described by opts and returns its path, id, size
// and SHA-256. The image is written to a temporary file next to
// opts.Output and renamed into place when complete.
func Build(ctx context.Context, opts Options) (Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	if _, err := os.Stat(o.Kernel); err != nil {
		return Result{}, fmt.Errorf("testimage: kernel: %w", err)
	}
	if o.ModuleDir == "" {
		if o.ModuleDir, err = os.Getwd(); err != nil {
			return Result{}, fmt.Errorf("testimage: working directory: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "rivet-testimage-")
	if err != nil {
		return Result{}, fmt.Errorf("testimage: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	initBin := filepath.Join(tmp, "init")
	if err := buildInit(ctx, o.ModuleDir, o.InitPackage, initBin); err != nil {
		return Result{}, err
	}
	initrd := filepath.Join(tmp, "initrd.img")
	if err := writeInitrd(initrd, initBin, o.ID); err != nil {
		return Result{}, err
	}
	efi := filepath.Join(tmp, "BOOTX64.EFI")
	if err := mkGrub(ctx, o.GrubMkstandalone, tmp, o.ID, efi); err != nil {
		return Result{}, err
	}
	idFile := filepath.Join(tmp, idFileName)
	if err := os.WriteFile(idFile, []byte(o.ID+"\n"), 0o644); err != nil {
		return Result{}, fmt.Errorf("testimage: %w", err)
	}

	if err := os.MkdirAll(filepath.Dir(o.Output), 0o755); err != nil {
		return Result{}, fmt.Errorf("testimage: output dir: %w", err)
	}
	part := filepath.Join(filepath.Dir(o.Output), "."+filepath.Base(o.Output)+".tmp")
	os.Remove(part)
	l := layoutFor(o.ID, o.Size)
	err = writeDisk(part, l, []espFile{
		{efi, "/EFI/BOOT/BOOTX64.EFI"},
		{o.Kernel, "/vmlinuz"},
		{initrd, "/initrd.img"},
		{idFile, "/" + idFileName},
	})
	if err != nil {
		os.Remove(part)
		return Result{}, err
	}
	sum, err := fileSHA256(part)
	if err != nil {
		os.Remove(part)
		return Result{}, err
	}
	if err := os.Rename(part, o.Output); err != nil {
		os.Remove(part)
		return Result{}, fmt.Errorf("testimage: %w", err)
	}
	res := Result{Path: o.Output, ID: o.ID, SHA256: sum, Size: o.Size, DiskSignature: l.diskSignature}
	o.Logger.InfoContext(ctx, "built test image", "path", res.Path, "id", res.ID, "bytes", res.Size,
		"sha256", res.SHA256, "disk_signature", fmt.Sprintf("0x%08x", res.DiskSignature),
		"elapsed", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// fileSHA256 returns the hex SHA-256 of a file, syncing it first.
func fileSHA256(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("testimage: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("testimage: sync %s: %w", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("testimage: hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
