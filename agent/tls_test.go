package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/wire"
)

// tlsConductor is a TLS server playing the conductor: Ironic's lookup and
// heartbeat, the inspection callback and the image server on one port,
// counting what reached its handlers.
type tlsConductor struct {
	*httptest.Server
	ironic  *fakeIronic
	mu      sync.Mutex
	inspect int
	images  int
	img     []byte
}

func newTLSConductor(t *testing.T, img []byte) *tlsConductor {
	t.Helper()
	c := &tlsConductor{ironic: &fakeIronic{beatSeen: make(chan struct{}, 10), node: nodeWithHints(nil)}, img: img}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/continue":
			c.mu.Lock()
			c.inspect++
			c.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"uuid":"`+nodeUUID+`"}`)
		case strings.HasPrefix(r.URL.Path, "/images/"):
			c.mu.Lock()
			c.images++
			c.mu.Unlock()
			http.ServeContent(w, r, "disk.raw", time.Time{}, bytes.NewReader(c.img))
		default:
			c.ironic.ServeHTTP(w, r)
		}
	}))
	c.Server.Config.ErrorLog = slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelError)
	c.StartTLS()
	t.Cleanup(c.Close)
	return c
}

func (c *tlsConductor) counts() (lookups, beats, inspections, images int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ironic.mu.Lock()
	defer c.ironic.mu.Unlock()
	return c.ironic.lookups, len(c.ironic.beats), c.inspect, c.images
}

// writePEM writes the certificate as a PEM file and returns its path.
func writePEM(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCA is a self-signed CA that signed nothing the test serves.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not the conductor's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func tlsAgentConfig(c *tlsConductor, disk string) Config {
	cfg := DefaultConfig()
	cfg.APIURLs = []string{c.URL}
	cfg.LookupMACs = []string{"52:54:00:12:34:56"}
	cfg.LookupInterval = 10 * time.Millisecond
	cfg.BlockDevices = []string{disk}
	cfg.DiskWaitAttempts = 1
	cfg.InspectionCallbackURL = c.URL + "/v1/continue"
	cfg.DownloadRetries, cfg.DownloadRetryInterval = 1, 10*time.Millisecond
	return cfg
}

// TestAgentVerifiesTheConductor runs the agent against a TLS conductor
// three ways: with the CA that signed the conductor's certificate (lookup,
// heartbeat, inspection and the image download work), with another CA
// (refused before any request reaches the conductor), and with
// ipa-insecure (works, with a warning).
func TestAgentVerifiesTheConductor(t *testing.T) {
	disk := loopdev.New(t, 64<<20)
	img, sum := diskImage(t, 3<<20+512, 0x5eed5eed)
	hints := nodeWithHints(map[string]any{"name": disk.Path})

	t.Run("right CA", func(t *testing.T) {
		c := newTLSConductor(t, img)
		cfg := tlsAgentConfig(c, disk.Path)
		cfg.CAFile = writePEM(t, c.Certificate().Raw)
		_, _ = startAgent(t, cfg, &fakePower{})
		waitBeat(t, c.ironic)
		c.ironic.mu.Lock()
		hb := c.ironic.beats[0]
		c.ironic.mu.Unlock()
		cl := client{t: t, base: hb.CallbackURL, token: testToken, hc: tlsClient(t, hb.AgentVerifyCA)}
		res := executeStep(cl, writeImageStep(c.URL+"/images/disk.raw", sum), hints)
		if res.CommandStatus != wire.StatusSucceeded {
			t.Fatalf("write_image from the TLS image server: %+v", res.CommandError)
		}
		if !bytes.Equal(readDisk(t, disk.Path, len(img)), img) {
			t.Fatal("disk differs from the image")
		}
		if lookups, beats, inspections, images := c.counts(); lookups == 0 || beats == 0 || inspections != 1 || images == 0 {
			t.Fatalf("lookups %d, beats %d, inspections %d, image requests %d", lookups, beats, inspections, images)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		c := newTLSConductor(t, img)
		cfg := tlsAgentConfig(c, disk.Path)
		cfg.CAFile = writePEM(t, otherCA(t))
		cfg.InspectionCallbackURL = "" // its retries take a minute; the right-CA case covers it
		cfg.LookupTimeout = 2 * time.Second
		cfg.ListenHost, cfg.ListenPort = "127.0.0.1", freePort(t)
		a, err := New(cfg, Options{Power: &fakePower{}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		err = a.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("Run = %v; want the lookup refused for an unknown authority", err)
		}
		if lookups, beats, inspections, _ := c.counts(); lookups+beats+inspections != 0 {
			t.Fatalf("%d lookups, %d beats, %d inspections reached a conductor the agent cannot verify", lookups, beats, inspections)
		}
		// The image download checks the same way.
		src, err := a.imageSource(wire.ImageInfo{ID: "disk.raw", URLs: []string{c.URL + "/images/disk.raw"}})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := src.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "unknown authority") {
			if st != nil {
				st.Close()
			}
			t.Fatalf("image download from an unverified server: %v", err)
		}
	})

	t.Run("ipa-insecure", func(t *testing.T) {
		c := newTLSConductor(t, img)
		cfg := tlsAgentConfig(c, disk.Path)
		cfg.Insecure = true
		logs := &syncbuf.Buffer{}
		startAgentWith(t, cfg, Options{Power: &fakePower{}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		waitBeat(t, c.ironic)
		if !strings.Contains(logs.String(), "ipa-insecure") || !strings.Contains(logs.String(), "NOT verified") {
			t.Fatalf("no warning about ipa-insecure in the log:\n%s", logs.String())
		}
	})
}

// TestRamdiskCA: with no ipa-cafile, a CA built into the ramdisk is
// trusted besides the system roots; ipa-cafile wins over it; a CA file
// without a certificate is an error at start.
func TestRamdiskCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	get := func(cfg Config, ramdiskCA string) error {
		c, err := clientTLS(&cfg, ramdiskCA, testLogger(t))
		if err != nil {
			return err
		}
		tr := &http.Transport{TLSClientConfig: c}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	right := writePEM(t, srv.Certificate().Raw)
	wrong := writePEM(t, otherCA(t))
	cfg := DefaultConfig()
	if err := get(cfg, filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("system roots alone verified a test certificate")
	}
	if err := get(cfg, right); err != nil {
		t.Errorf("ramdisk CA: %v", err)
	}
	cfg.CAFile = wrong
	if err := get(cfg, right); err == nil {
		t.Error("ipa-cafile did not win over the ramdisk's CA")
	}
	empty := filepath.Join(t.TempDir(), "empty.crt")
	os.WriteFile(empty, []byte("no certificate here\n"), 0o644)
	cfg.CAFile = empty
	if _, err := clientTLS(&cfg, "", testLogger(t)); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("empty CA file: %v", err)
	}
	cfg.CAFile = filepath.Join(t.TempDir(), "missing.crt")
	cfg.Standalone = true
	if _, err := New(cfg, Options{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA file: New = %v", err)
	}
	cfg.CAFile, cfg.TLSMinVersion = right, "1.3"
	if err := get(cfg, ""); err != nil {
		t.Errorf("TLS 1.3 minimum against a Go server: %v", err)
	}
}
