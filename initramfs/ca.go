package initramfs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path"

	"github.com/u-root/mkuimage/cpio"
)

// CAFilePath is where Options.CAFile goes in the archive; rivet-agent
// trusts the CA bundle found there (agent.RamdiskCAFile) when no
// ipa-cafile is given.
const CAFilePath = "etc/rivet/ca.crt"

// addCAFile copies the PEM bundle at file to CAFilePath in a, after
// checking that it holds at least one certificate and nothing else
// (a private key in the ramdisk would be served to anyone who boots it).
func addCAFile(a *cpio.Archive, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("initramfs: CA file: %w", err)
	}
	certs := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("initramfs: CA file %s holds a %s block; only certificates belong in the ramdisk", file, blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("initramfs: CA file %s: %w", file, err)
		}
		certs++
	}
	if certs == 0 {
		return fmt.Errorf("initramfs: CA file %s holds no PEM certificate", file)
	}
	for _, dir := range []string{"etc", path.Dir(CAFilePath)} {
		if _, ok := a.Get(dir); !ok {
			if err := a.WriteRecord(cpio.Directory(dir, 0o755)); err != nil {
				return err
			}
		}
	}
	return a.WriteRecord(cpio.StaticFile(CAFilePath, string(b), 0o644))
}
