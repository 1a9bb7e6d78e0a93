package testimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// TestBuild builds an image around a fake kernel and checks its layout
// from the bytes: protective MBR, GPT, the ESP and its files.
func TestBuild(t *testing.T) {
	grub := vmtest.Tool(t, "grub-mkstandalone")
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi/linux.mod"); err != nil {
		vmtest.Unavailable(t, "grub-efi-amd64-bin not installed (run make deps): %v", err)
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	kernelData := bytes.Repeat([]byte("not a kernel "), 100000)
	if err := os.WriteFile(kernel, kernelData, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "disk.raw")
	res, err := Build(t.Context(), Options{Kernel: kernel, Output: out, ID: "unit-1", ModuleDir: vmtest.RepoRoot(t), GrubMkstandalone: grub})
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(img)) != DefaultSize || res.Size != DefaultSize || res.Path != out || res.ID != "unit-1" {
		t.Errorf("result %+v, file %d bytes", res, len(img))
	}
	if sum := sha256.Sum256(img); hex.EncodeToString(sum[:]) != res.SHA256 {
		t.Errorf("SHA256 %s does not match the file", res.SHA256)
	}
	l := layoutFor("unit-1", DefaultSize)
	if sig := binary.LittleEndian.Uint32(img[440:]); sig != l.diskSignature || sig != res.DiskSignature || sig == 0 {
		t.Errorf("MBR disk signature = %#x, want %#x", sig, l.diskSignature)
	}
	if img[450] != 0xee || img[510] != 0x55 || img[511] != 0xaa {
		t.Errorf("no protective MBR: type %#x, signature % x", img[450], img[510:512])
	}
	if string(img[512:520]) != "EFI PART" || string(img[len(img)-512:len(img)-504]) != "EFI PART" {
		t.Error("primary or backup GPT header missing")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "out", ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	d, err := diskfs.Open(out, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	g, ok := table.(*gpt.Table)
	if !ok || len(g.Partitions) != 1 {
		t.Fatalf("partition table = %#v", table)
	}
	p := g.Partitions[0]
	if p.Type != gpt.EFISystemPartition || p.Start != espStart || !strings.EqualFold(p.GUID, l.espGUID) || !strings.EqualFold(g.GUID, l.diskGUID) {
		t.Errorf("ESP = %+v (disk GUID %s)", p, g.GUID)
	}
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		f, err := fs.Open(name)
		if err != nil {
			t.Fatalf("open %s on the ESP: %v", name, err)
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read("/vmlinuz"), kernelData) {
		t.Error("/vmlinuz differs from the kernel")
	}
	if efi := read("/EFI/BOOT/BOOTX64.EFI"); !bytes.HasPrefix(efi, []byte("MZ")) {
		t.Error("BOOTX64.EFI is not a PE image")
	}
	if initrd := read("/initrd.img"); !bytes.HasPrefix(initrd, []byte{0x1f, 0x8b}) {
		t.Error("initrd.img is not gzip")
	}
	if got := string(read("/" + idFileName)); got != "unit-1\n" {
		t.Errorf("id file = %q", got)
	}

	// fsck.fat checks what go-diskfs wrote (and fixRootDotDot's repair).
	if fsck, err := exec.LookPath("fsck.fat"); err == nil {
		esp := filepath.Join(dir, "esp.img")
		if err := os.WriteFile(esp, img[espStart*512:int64(espStart*512)+int64(l.espSectors())*512], 0o644); err != nil {
			t.Fatal(err)
		}
		outb, err := exec.Command(fsck, "-n", esp).CombinedOutput()
		if err != nil || strings.Contains(string(outb), "Invalid") {
			t.Errorf("fsck.fat -n: %v\n%s", err, outb)
		}
	} else {
		t.Log("fsck.fat not installed; FAT not checked")
	}
}
