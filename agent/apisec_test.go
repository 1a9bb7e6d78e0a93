package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/kernelcmdline"
)

// TestAPIBodyLimits: a body over the cap gets IPA's 413 (whether its
// length is declared or not) and runs nothing; a body with anything after
// its JSON object is refused.
func TestAPIBodyLimits(t *testing.T) {
	_, base := startAgent(t, standaloneConfig(), &fakePower{})
	post := func(body io.Reader, length int64) (int, []byte) {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/commands/?wait=true", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Declared too long: refused before the body is read.
	big := io.MultiReader(strings.NewReader(`{"name":"standby.sync","params":{"x":"`), io.LimitReader(repeat('a'), maxRequestBody), strings.NewReader(`"}}`))
	st, b := post(big, maxRequestBody+40)
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared %d bytes: HTTP %d %s", maxRequestBody+40, st, b)
	}
	mustContain(t, "faultstring", fault(t, b).FaultString, "413 Request Entity Too Large: The data value transmitted exceeds the capacity limit.")
	// No length (chunked): refused once past the cap.
	big = io.MultiReader(strings.NewReader(`{"name":"standby.sync","params":{"x":"`), io.LimitReader(repeat('a'), maxRequestBody), strings.NewReader(`"}}`))
	st, b = post(big, -1)
	if st != http.StatusRequestEntityTooLarge || fault(t, b).FaultCode != "Client" {
		t.Fatalf("chunked body over the cap: HTTP %d %s", st, b)
	}
	for _, body := range []string{
		`{"name":"standby.sync","params":{}} {"name":"standby.power_off","params":{}}`,
		`{"name":"standby.sync","params":{}}garbage`,
		`{"name":"standby.sync","params":{}}]`,
	} {
		st, b := post(strings.NewReader(body), int64(len(body)))
		if st != http.StatusBadRequest || !strings.Contains(fault(t, b).FaultString, "Invalid request body") {
			t.Errorf("%q: HTTP %d %s; want 400 Invalid request body", body, st, b)
		}
	}
	c := client{t: t, base: base}
	if l := c.list(); len(l) != 0 {
		t.Fatalf("refused requests ran commands: %+v", l)
	}
	// Trailing whitespace is fine.
	body := `{"name":"standby.get_partition_uuids","params":{}}` + "\n\n"
	if st, b := post(strings.NewReader(body), int64(len(body))); st != http.StatusOK {
		t.Fatalf("trailing newline: HTTP %d %s", st, b)
	}
}

type repeat byte

func (r repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestStandaloneListensOnLoopbackWithoutToken: nothing authenticates a
// standalone agent's API unless it has a token, so it listens on loopback
// unless told otherwise.
func TestStandaloneListensOnLoopbackWithoutToken(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"standalone, no token", func(c *Config) {}, "127.0.0.1"},
		{"standalone, token", func(c *Config) { c.AgentToken = testToken }, "::"},
		{"standalone, host given", func(c *Config) { c.ListenHost = "0.0.0.0" }, "0.0.0.0"},
		{"driven by Ironic", func(c *Config) { c.Standalone = false }, "::"},
	}
	for _, tc := range cases {
		cfg := standaloneConfig()
		tc.cfg(&cfg)
		if got := cfg.EffectiveListenHost(); got != tc.want {
			t.Errorf("%s: listen host %q, want %q", tc.name, got, tc.want)
		}
	}
	// The real listener.
	cfg := standaloneConfig()
	cfg.ListenPort = freePort(t)
	a, err := New(cfg, Options{Power: &fakePower{}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(time.Minute):
		t.Fatal("agent not ready")
	}
	host, port, _ := net.SplitHostPort(a.Addr().String())
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || port != strconv.Itoa(cfg.ListenPort) {
		t.Fatalf("a standalone agent without a token listens on %s", a.Addr())
	}
	resp, err := http.Get("http://" + a.Addr().String() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestParseCipherSuites(t *testing.T) {
	ids, err := ParseCipherSuites("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
	if err != nil || len(ids) != 4 {
		t.Fatalf("IPA's default list: %v, %v", ids, err)
	}
	if ids, err := ParseCipherSuites("HIGH:!aNULL:TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"); err != nil || len(ids) != 1 {
		t.Fatalf("keywords skipped, IANA name taken: %v, %v", ids, err)
	}
	for _, bad := range []string{"", "HIGH:!aNULL", "RC4-SHA", "DES-CBC3-SHA"} {
		if _, err := ParseCipherSuites(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestIPAParameterParity(t *testing.T) {
	line := `ipa-api-url=https://192.0.2.1:6385 ipa-image-download-connection-retries=3 ipa-image-download-connection-retry-interval=2 ` +
		`ipa-image-download-max-duration=3600 ipa-http-request-timeout=12 ipa-tls-min-version=1.3 ` +
		`ipa-tls-cipher-suites=ECDHE-RSA-AES256-GCM-SHA384 ipa-network-interface=eth1 rivet-max-decoder-memory=512 ` +
		`rivet-allow-md5-checksum=1 ipa-collect-lldp=1 ipa-lldp-timeout=5 ipa-ntp-server=192.0.2.9 ipa-enable-vlan-interfaces=all ` +
		`ipa-inspection-dhcp-wait-timeout=10 ipa-agent-token-required=1 boot_method=vmedia`
	params, err := kernelcmdline.Parse(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if cfg.DownloadRetries != 9 || cfg.DownloadRetryInterval != 10*time.Second || cfg.HTTPRequestTimeout != 30*time.Second ||
		cfg.MaxDecoderMemory != 128<<20 || cfg.AllowMD5 || cfg.TLSMinVersion != "1.2" || cfg.ListenHost != "" {
		t.Fatalf("defaults %+v", cfg)
	}
	if err := cfg.ApplyKernelParams(params); err != nil {
		t.Fatal(err)
	}
	if cfg.DownloadRetries != 3 || cfg.DownloadRetryInterval != 2*time.Second || cfg.DownloadMaxDuration != time.Hour ||
		cfg.HTTPRequestTimeout != 12*time.Second || cfg.TLSMinVersion != "1.3" || cfg.TLSCipherSuites != "ECDHE-RSA-AES256-GCM-SHA384" ||
		cfg.NetworkInterface != "eth1" || cfg.MaxDecoderMemory != 512<<20 || !cfg.AllowMD5 ||
		!cfg.CollectLLDP || cfg.LLDPTimeout != 5*time.Second {
		t.Fatalf("parsed %+v", cfg)
	}
	for _, name := range []string{"ipa-ntp-server", "ipa-enable-vlan-interfaces", "ipa-inspection-dhcp-wait-timeout", "ipa-agent-token-required", "boot_method"} {
		if _, ok := cfg.Ignored[name]; !ok || IgnoredReason(name) == "" {
			t.Errorf("%s not recorded as accepted-and-ignored: %v", name, cfg.Ignored)
		}
	}
	if len(cfg.Ignored) != 5 {
		t.Errorf("ignored %v", cfg.Ignored)
	}
	for _, bad := range []map[string]string{
		{"ipa-api-url": "mdns"},
		{"ipa-tls-min-version": "1.1"},
		{"ipa-tls-cipher-suites": "RC4-MD5"},
		{"rivet-max-decoder-memory": "lots"},
		{"rivet-max-decoder-memory": "0"},
		{"ipa-image-download-connection-retries": "-1"},
	} {
		c := DefaultConfig()
		if err := c.ApplyKernelParams(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	for v, want := range map[string]int64{"256": 256 << 20, "256M": 256 << 20, "1G": 1 << 30, "1GiB": 1 << 30, "64MiB": 64 << 20} {
		c := DefaultConfig()
		if err := c.ApplyKernelParams(map[string]string{"rivet-max-decoder-memory": v}); err != nil || c.MaxDecoderMemory != want {
			t.Errorf("rivet-max-decoder-memory=%s: %d, %v", v, c.MaxDecoderMemory, err)
		}
	}
	if m := (&Config{MaxDecoderMemory: 128 << 20}).MemoryLimit(); m != BaseMemory+128<<20 {
		t.Errorf("MemoryLimit %d", m)
	}
}
