// Command fakegrub stands in for an image's grub-install and grub-mkconfig
// in the bootloader tests: run chrooted in the image, it records its
// arguments and what it sees of the bind mounts, and writes what the real
// tools would (a fallback loader on the ESP, a grub.cfg).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	var seen []string
	for _, p := range []string{"/proc/self/mountinfo", "/sys/class/block", "/dev/null", "/run", "/boot/efi"} {
		if _, err := os.Stat(p); err == nil {
			seen = append(seen, p)
		}
	}
	line := fmt.Sprintf("%s %s | sees %s\n", filepath.Base(os.Args[0]), strings.Join(os.Args[1:], " "), strings.Join(seen, ","))
	f, err := os.OpenFile("/var/log/fake-grub.log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f.WriteString(line)
	f.Close()
	args := strings.Join(os.Args[1:], " ")
	switch {
	case strings.HasSuffix(os.Args[0], "-install") && strings.Contains(args, "--removable"):
		must(os.MkdirAll("/boot/efi/EFI/BOOT", 0o755))
		must(os.WriteFile("/boot/efi/EFI/BOOT/BOOTX64.EFI", []byte("MZ fake grub"), 0o755))
	case strings.HasSuffix(os.Args[0], "-mkconfig"):
		for i, a := range os.Args {
			if a == "-o" && i+1 < len(os.Args) {
				must(os.MkdirAll(filepath.Dir(os.Args[i+1]), 0o755))
				must(os.WriteFile(os.Args[i+1], []byte("# fake grub.cfg\n"), 0o644))
			}
		}
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
