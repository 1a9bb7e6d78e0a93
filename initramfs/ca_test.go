package initramfs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/agent"
)

func TestCAFile(t *testing.T) {
	if "/"+CAFilePath != agent.RamdiskCAFile {
		t.Fatalf("the ramdisk puts the CA at /%s, the agent looks at %s", CAFilePath, agent.RamdiskCAFile)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "conductor CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	os.WriteFile(good, pemCert, 0o644)
	a, err := baseArchive("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := addCAFile(a, good); err != nil {
		t.Fatal(err)
	}
	r, content := readRecord(t, a, CAFilePath)
	if content != string(pemCert) || r.Mode&0o777 != 0o644 {
		t.Fatalf("CA record %+v: %q", r.Info, content)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, body := range map[string][]byte{
		"empty":       []byte("nothing\n"),
		"private key": append(pemCert, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...),
		"garbage":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}),
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, body, 0o600)
		a, _ := baseArchive("", nil)
		if err := addCAFile(a, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := addCAFile(a, filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}
