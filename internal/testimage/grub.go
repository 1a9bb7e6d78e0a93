package testimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// grubModules are the GRUB modules put into the standalone image: enough to
// read the ESP, run grub.cfg and boot Linux through the EFI stub.
const grubModules = "part_gpt fat normal configfile echo test regexp search search_fs_file linux boot"

// grubConfig returns the embedded grub.cfg: it boots /vmlinuz and
// /initrd.img from the partition GRUB itself was loaded from ($cmdpath),
// falling back to a search for the id file.
func grubConfig(id string) string {
	return `set timeout=0
regexp --set=1:bootdev '^\(([^)]+)\)' "$cmdpath"
if [ -n "$bootdev" ]; then
  set root="$bootdev"
else
  search --no-floppy --set=root --file /` + idFileName + `
fi
echo "rivet test image ` + id + `: booting /vmlinuz from ($root)"
linux /vmlinuz console=ttyS0 panic=-1 rivet.testimage=` + id + `
initrd /initrd.img
boot
`
}

// idFileName is a file on the ESP holding the image id.
const idFileName = "rivet-testimage.id"

// mkGrub builds a standalone GRUB EFI binary with grub.cfg embedded.
func mkGrub(ctx context.Context, prog, dir, id, out string) error {
	cfg := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(cfg, []byte(grubConfig(id)), 0o644); err != nil {
		return fmt.Errorf("testimage: write grub.cfg: %w", err)
	}
	cmd := exec.CommandContext(ctx, prog, "-O", "x86_64-efi",
		"--locales=", "--fonts=", "--themes=",
		"--install-modules="+grubModules, "--modules=part_gpt fat",
		"-o", out, "boot/grub/grub.cfg="+cfg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testimage: %s: %w\n%s", prog, err, b)
	}
	return nil
}
