package imagewriter

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/imagewriter/layout"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/osimage"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// requireTool skips (or, under RIVET_REQUIRE_E2E=1, fails) when a tool the
// test checks its output with is missing.
func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatalf("RIVET_REQUIRE_E2E=1 but %s (%s) is not installed", name, pkg)
		}
		t.Skipf("%s (%s) is not installed", name, pkg)
	}
}

// diskImageFile builds a whole-disk image: a table (gpt or msdos) with one
// Linux partition from 1 MiB holding random data and zero runs, size bytes.
func diskImageFile(t *testing.T, table layout.Table, size int64) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	b := file.New(f, false)
	parts := []layout.Partition{{Number: 1, Start: mib, Size: size - 2*mib, GPTType: layout.TypeLinux, MBRType: layout.MBRLinux, Name: "root"}}
	if err := writeTable(&diskBackend{t: fileAsTarget{f, size}}, table, parts, size, 512); err != nil {
		t.Fatal(err)
	}
	_ = b
	data := make([]byte, 4*mib)
	rand.Read(data)
	if _, err := f.WriteAt(data, 2*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[:mib], size-3*mib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, img
}

// fileAsTarget lets writeTable build fixtures in a plain file.
type fileAsTarget struct {
	f    *os.File
	size int64
}

func (x fileAsTarget) WriteAt(p []byte, off int64) (int, error)      { return x.f.WriteAt(p, off) }
func (x fileAsTarget) ReadAt(p []byte, off int64) (int, error)       { return x.f.ReadAt(p, off) }
func (x fileAsTarget) ReadDirectAt(p []byte, off int64) (int, error) { return x.f.ReadAt(p, off) }
func (x fileAsTarget) ZeroRange(off, n int64) error                  { return nil }
func (x fileAsTarget) ZeroOffload() bool                             { return false }
func (x fileAsTarget) Size() int64                                   { return x.size }
func (x fileAsTarget) SectorSize() int64                             { return 512 }
func (x fileAsTarget) Flush() error                                  { return x.f.Sync() }
func (x fileAsTarget) SyncPartitions([]kernelPartition) error        { return nil }
func (x fileAsTarget) PartitionPath(int) string                      { return "" }
func (x fileAsTarget) File() *os.File                                { return x.f }
func (x fileAsTarget) IsBlock() bool                                 { return false }
func (x fileAsTarget) Close() error                                  { return nil }
func (x fileAsTarget) Path() string                                  { return x.f.Name() }

func compressed(t *testing.T, f Format, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch f {
	case FormatGzip:
		w = gzip.NewWriter(&buf)
	case FormatZstd:
		z, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = z
	case FormatXz:
		z, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = z
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func qemuConvert(t *testing.T, rawPath string, opts ...string) []byte {
	t.Helper()
	requireTool(t, "qemu-img", "qemu-utils")
	out := rawPath + ".qcow2"
	if err := osimage.ConvertQcow2(context.Background(), rawPath, out, opts...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteFormats writes one GPT disk image in every format to a larger
// loop device: the data must arrive intact, the backup GPT must move to the
// device's end, and the kernel must see the partition.
func TestWriteFormats(t *testing.T) {
	rawPath, raw := diskImageFile(t, layout.GPT, 40*mib)
	for _, tc := range []struct {
		name     string
		format   Format
		declared string
		served   func(t *testing.T) []byte
	}{
		{"raw", FormatRaw, "raw", func(*testing.T) []byte { return raw }},
		{"gzip", FormatGzip, "raw", func(t *testing.T) []byte { return compressed(t, FormatGzip, raw) }},
		{"zstd", FormatZstd, "", func(t *testing.T) []byte { return compressed(t, FormatZstd, raw) }},
		{"xz", FormatXz, "raw", func(t *testing.T) []byte { return compressed(t, FormatXz, raw) }},
		{"qcow2", FormatQcow2, "qcow2", func(t *testing.T) []byte { return qemuConvert(t, rawPath) }},
		{"qcow2 zstd-compressed clusters", FormatQcow2, "qcow2", func(t *testing.T) []byte {
			return qemuConvert(t, rawPath, "-c", "-o", "compression_type=zstd,cluster_size=65536")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served := tc.served(t)
			loop := loopdev.New(t, 64*mib)
			srv := serveBytes(t, served)
			res, err := Write(context.Background(), Request{
				Source: Source{URLs: []string{srv.URL + "/disk"}, Retry: fastRetry}, Checksum: sha256Of(served),
				Targets: []string{loop.Path}, DiskFormat: tc.declared, Verify: true, BufferSize: mib,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != tc.format || res.Disks[0].PartitionTable != "gpt" {
				t.Fatalf("result = %+v", res)
			}
			if res.ImageSize < int64(len(raw)) {
				t.Fatalf("image size %d < %d", res.ImageSize, len(raw))
			}
			got := readDevice(t, loop.Path, mib, len(raw)-2*mib)
			if !bytes.Equal(got, raw[mib:len(raw)-mib]) {
				t.Fatal("partition data differs from the image")
			}
			checkGPTAtEnd(t, loop)
			if _, err := os.Stat(loop.Path + "p1"); err != nil {
				t.Fatalf("the kernel does not show partition 1: %v", err)
			}
		})
	}
}

func checkGPTAtEnd(t *testing.T, loop *loopdev.Device) {
	t.Helper()
	f, err := os.Open(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gt, err := gpt.Read(file.New(f, true), 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	if gt.RecoveredFromBackup || gt.TotalSize() != uint64(loop.Size) {
		t.Fatalf("GPT covers %d bytes of a %d-byte disk (recovered from backup: %v)", gt.TotalSize(), loop.Size, gt.RecoveredFromBackup)
	}
	if err := gt.Verify(file.New(f, true), uint64(loop.Size)); err != nil {
		t.Fatalf("backup GPT: %v", err)
	}
}

func TestWriteRefusesFormats(t *testing.T) {
	rawPath, raw := diskImageFile(t, layout.GPT, 8*mib)
	qcow := qemuConvert(t, rawPath)
	backing := filepath.Join(t.TempDir(), "overlay.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-b", rawPath, "-F", "raw", backing).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, b)
	}
	overlay, _ := os.ReadFile(backing)
	big := make([]byte, 16*mib)
	bigQcow := qemuConvert(t, writeTemp(t, big))
	for _, tc := range []struct {
		name      string
		served    []byte
		declared  string
		permitted []string
		class     error
		msg       string
	}{
		{"raw declared, qcow2 served", qcow, "raw", nil, ErrFormat, `disk_format is "raw" but the image is qcow2`},
		{"qcow2 declared, raw served", raw, "qcow2", nil, ErrFormat, "disk_format is qcow2 but the image is raw"},
		{"qcow2 declared, gzip served", compressed(t, FormatGzip, raw), "qcow2", nil, ErrFormat, "raw in gzip"},
		{"raw not permitted", raw, "", []string{"qcow2"}, ErrFormat, "not in permitted_image_formats"},
		{"gpt permits a raw GPT disk", raw, "gpt", []string{"gpt"}, nil, ""},
		{"unknown disk_format", raw, "vmdk", nil, ErrFormat, "not supported"},
		{"qcow2 with a backing file", overlay, "qcow2", nil, ErrFormat, "backing file"},
		{"qcow2 inside gzip", compressed(t, FormatGzip, qcow), "", nil, ErrFormat, "cannot be streamed"},
		{"qcow2 larger than the disk", bigQcow, "qcow2", nil, ErrTooLarge, "nothing was written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := fileTarget(t, 12*mib)
			marker := []byte("previous contents")
			os.WriteFile(dst, marker, 0o644)
			os.Truncate(dst, 12*mib)
			srv := serveBytes(t, tc.served)
			_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
				Checksum: sha256Of(tc.served), Targets: []string{dst}, DiskFormat: tc.declared, PermittedFormats: tc.permitted})
			if tc.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v; want %v containing %q", err, tc.class, tc.msg)
			}
			if got := readDevice(t, dst, 0, len(marker)); !bytes.Equal(got, marker) {
				t.Fatal("a refused image changed the disk")
			}
		})
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWriteTruncatedCompressedStream: a compressed image cut short is an
// error even when the checksum matches the short file as served.
func TestWriteTruncatedCompressedStream(t *testing.T) {
	_, raw := diskImageFile(t, layout.GPT, 8*mib)
	for _, f := range []Format{FormatGzip, FormatZstd, FormatXz} {
		t.Run(string(f), func(t *testing.T) {
			full := compressed(t, f, raw)
			cut := full[:len(full)*2/3]
			srv := serveBytes(t, cut)
			dst := fileTarget(t, 12*mib)
			_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
				Checksum: sha256Of(cut), Targets: []string{dst}})
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("err = %v; want ErrTruncated", err)
			}
			withTrailer := append(bytes.Clone(full), "junk"...)
			srv2 := serveBytes(t, withTrailer)
			_, err = Write(context.Background(), Request{Source: Source{URLs: []string{srv2.URL}, Retry: fastRetry},
				Checksum: sha256Of(withTrailer), Targets: []string{dst}})
			if err == nil {
				t.Fatal("trailing bytes after the compressed stream were accepted")
			}
		})
	}
}

// configdriveISO builds an ISO 9660 config drive labelled config-2 with an
// openstack/latest tree, the way Ironic does (go-diskfs instead of
// genisoimage).
func configdriveISO(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "cd.iso")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "ws"), 0o755)
	fs, err := iso9660.Create(file.New(f, false), 0, 0, 2048, filepath.Join(dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Mkdir("/openstack/latest"); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"/openstack/latest/meta_data.json": `{"uuid": "1215c45f-5c01-4883-84e1-a2a82a7c8a52", "hostname": "rivet-test"}`,
		"/openstack/latest/user_data":      "#cloud-config\n",
	} {
		w, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
		w.Close()
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{VolumeIdentifier: "config-2", RockRidge: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkConfigdrive checks that dev holds the config drive: an ISO 9660
// filesystem labelled config-2 whose meta_data.json reads back. It mounts
// it when the kernel (or fuseiso, over FUSE) can, and otherwise compares
// the partition's bytes with the ISO.
func checkConfigdrive(t *testing.T, dev string, iso []byte) {
	t.Helper()
	head := readDevice(t, dev, 0, 64<<10)
	if info := probeFS(bytes.NewReader(head), 0); info.Type != "iso9660" || info.Label != "config-2" {
		t.Fatalf("%s holds %+v, want iso9660 labelled config-2", dev, info)
	}
	if out, err := exec.Command("blkid", "-o", "export", dev).CombinedOutput(); err == nil {
		if !strings.Contains(string(out), "TYPE=iso9660") || !strings.Contains(string(out), "LABEL=config-2") {
			t.Fatalf("blkid %s: %s", dev, out)
		}
	}
	mnt := t.TempDir()
	var meta []byte
	switch {
	case unix.Mount(dev, mnt, "iso9660", unix.MS_RDONLY, "") == nil:
		defer unix.Unmount(mnt, 0)
		meta, _ = os.ReadFile(filepath.Join(mnt, "openstack/latest/meta_data.json"))
	case hasTool("fuseiso"):
		if out, err := exec.Command("fuseiso", dev, mnt).CombinedOutput(); err != nil {
			t.Fatalf("fuseiso %s: %v: %s", dev, err, out)
		}
		defer exec.Command("fusermount", "-u", mnt).Run()
		meta, _ = os.ReadFile(filepath.Join(mnt, "openstack/latest/meta_data.json"))
	default:
		t.Logf("no ISO 9660 mount here (kernel without isofs, no fuseiso): comparing %s with the ISO instead", dev)
		if !bytes.Equal(readDevice(t, dev, 0, len(iso)), iso) {
			t.Fatalf("%s does not hold the config drive", dev)
		}
		return
	}
	if !strings.Contains(string(meta), `"hostname": "rivet-test"`) {
		t.Fatalf("meta_data.json on %s = %q", dev, meta)
	}
}

func hasTool(name string) bool { _, err := exec.LookPath(name); return err == nil }

func TestWholeDiskConfigdrive(t *testing.T) {
	iso := configdriveISO(t)
	for _, table := range []layout.Table{layout.GPT, layout.MSDOS} {
		t.Run(string(table), func(t *testing.T) {
			_, raw := diskImageFile(t, table, 40*mib)
			loop := loopdev.New(t, 160*mib)
			srv := serveBytes(t, raw)
			res, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sha256Of(raw),
				Targets: []string{loop.Path}, Configdrive: iso})
			if err != nil {
				t.Fatal(err)
			}
			cd := res.Disks[0].Partitions["configdrive"]
			if cd != loop.Path+"p2" {
				t.Fatalf("config drive partition = %q, want %sp2 (%+v)", cd, loop.Path, res.Disks[0])
			}
			checkConfigdrive(t, cd, iso)
			if table == layout.GPT {
				checkGPTAtEnd(t, loop)
			}
			// Written again, the image's own config-2 partition is reused.
			f, _ := os.Open(loop.Path)
			var second []byte
			if table == layout.GPT {
				gt, err := gpt.Read(file.New(f, true), 512, 512)
				if err != nil || len(gt.Partitions) < 2 {
					t.Fatalf("GPT after config drive: %v %+v", err, gt)
				}
			} else {
				mt, err := mbr.Read(file.New(f, true), 512, 512)
				if err != nil || mt.Partitions[1].Start != uint32((160-64)*mib/512) {
					t.Fatalf("MBR after config drive: %v %+v", err, mt)
				}
			}
			f.Close()
			second = readDevice(t, loop.Path, 0, 160*mib)
			loop2 := loopdev.New(t, 160*mib)
			srv2 := serveBytes(t, second)
			res2, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv2.URL}}, Checksum: sha256Of(second),
				Targets: []string{loop2.Path}, Configdrive: iso})
			if err != nil {
				t.Fatal(err)
			}
			if got := res2.Disks[0].Partitions["configdrive"]; got != loop2.Path+"p2" {
				t.Fatalf("reused config drive partition = %q", got)
			}
		})
	}
}

func rootFS(t *testing.T, sizeMB int) (string, []byte) {
	t.Helper()
	requireTool(t, "mkfs.ext4", "e2fsprogs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("rivet-root\n"), 0o644)
	big := make([]byte, 3*mib)
	rand.Read(big)
	os.WriteFile(filepath.Join(tree, "blob"), big, 0o644)
	img := filepath.Join(dir, "root.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, img, strconv.Itoa(sizeMB)+"M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return img, b
}

// TestWritePartitionImage lays out a disk for a partition image in each
// boot mode, streams an ext4 root (raw and qcow2) into the root partition,
// and checks everything the way the deployed OS would see it.
func TestWritePartitionImage(t *testing.T) {
	rootPath, root := rootFS(t, 48)
	iso := configdriveISO(t)
	for _, tc := range []struct {
		name   string
		pi     PartitionImage
		served []byte
		roles  []string
	}{
		{"uefi gpt", PartitionImage{BootMode: "uefi", RootMB: 64, SwapMB: 16, EphemeralMB: 32}, root,
			[]string{"efi system partition", "ephemeral", "swap", "configdrive", "root"}},
		{"bios msdos qcow2 root", PartitionImage{BootMode: "bios", RootMB: 64, SwapMB: 16}, nil,
			[]string{"swap", "configdrive", "root"}},
		{"bios gpt", PartitionImage{BootMode: "bios", DiskLabel: "gpt", SwapMB: 8}, root,
			[]string{"BIOS Boot partition", "swap", "configdrive", "root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served := tc.served
			if served == nil {
				served = qemuConvert(t, rootPath)
			}
			loop := loopdev.New(t, 1<<30)
			srv := serveBytes(t, served)
			res, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL + "/root.img"}}, Checksum: sha256Of(served),
				Targets: []string{loop.Path}, Partition: &tc.pi, Configdrive: iso, Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			d := res.Disks[0]
			if len(d.Partitions) != len(tc.roles) {
				t.Fatalf("partitions = %v, want roles %v", d.Partitions, tc.roles)
			}
			for i, role := range tc.roles {
				want := loop.Path + "p" + strconv.Itoa(i+1)
				if d.Partitions[role] != want {
					t.Fatalf("%s is %q, want %s (%v)", role, d.Partitions[role], want, d.Partitions)
				}
				if _, err := os.Stat(want); err != nil {
					t.Fatalf("the kernel does not show %s: %v", want, err)
				}
			}
			rootDev := d.Partitions["root"]
			if info := probeFS(bytes.NewReader(root), 0); d.RootUUID != info.UUID || info.UUID == "" {
				t.Fatalf("root uuid = %q, the filesystem's is %q", d.RootUUID, info.UUID)
			}
			mnt := t.TempDir()
			if err := unix.Mount(rootDev, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
				t.Fatalf("mount %s: %v", rootDev, err)
			}
			host, err := os.ReadFile(filepath.Join(mnt, "etc/hostname"))
			unix.Unmount(mnt, 0)
			if err != nil || string(host) != "rivet-root\n" {
				t.Fatalf("etc/hostname on the deployed root = %q, %v", host, err)
			}
			checkConfigdrive(t, d.Partitions["configdrive"], iso)
			swap := readDevice(t, d.Partitions["swap"], 0, 4096)
			if info := probeFS(bytes.NewReader(swap), 0); info.Type != "swap" || info.Label != "swap1" {
				t.Fatalf("swap partition holds %+v", info)
			}
			if out, err := exec.Command("blkid", "-o", "export", d.Partitions["swap"]).CombinedOutput(); err == nil && !strings.Contains(string(out), "TYPE=swap") {
				t.Fatalf("blkid swap: %s", out)
			}
			if esp, ok := d.Partitions["efi system partition"]; ok {
				if d.ESPUUID == "" {
					t.Fatal("no ESP uuid")
				}
				if hasTool("fsck.vfat") {
					if out, err := exec.Command("fsck.vfat", "-n", esp).CombinedOutput(); err != nil {
						t.Fatalf("fsck.vfat %s: %v: %s", esp, err, out)
					}
				}
				if info := probeFS(bytes.NewReader(readDevice(t, esp, 0, 4096)), 0); info.Type != "vfat" || info.Label != "efi-part" || info.UUID != d.ESPUUID {
					t.Fatalf("ESP holds %+v, reported uuid %s", info, d.ESPUUID)
				}
			}
			if eph, ok := d.Partitions["ephemeral"]; ok && hasTool("e2fsck") {
				if out, err := exec.Command("e2fsck", "-n", "-f", eph).CombinedOutput(); err != nil {
					t.Fatalf("e2fsck %s: %v: %s", eph, err, out)
				}
			}
		})
	}
}

func TestPartitionImageTooLargeForRoot(t *testing.T) {
	_, root := rootFS(t, 48)
	loop := loopdev.New(t, 256*mib)
	srv := serveBytes(t, root)
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sha256Of(root),
		Targets: []string{loop.Path}, Partition: &PartitionImage{RootMB: 32}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("err = %v", err)
	}
	_, err = Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sha256Of(root),
		Targets: []string{loop.Path}, Partition: &PartitionImage{BootMode: "uefi", RootMB: 1024}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "do not fit") {
		t.Fatalf("err = %v", err)
	}
}
