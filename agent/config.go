package agent

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of the agent. DefaultConfig gives IPA's defaults;
// the kernel command line and then flags of the same names override them.
type Config struct {
	// APIURLs are the Ironic API endpoints (ipa-api-url, comma-separated).
	APIURLs []string
	// RequestID is ipa-global-request-id.
	RequestID string
	// ListenHost and ListenPort are where the agent API listens.
	ListenHost string
	ListenPort int
	// AdvertiseHost and AdvertisePort form the callback URL; an empty host
	// is found from the route to the API.
	AdvertiseHost     string
	AdvertisePort     int
	AdvertiseProtocol string
	// IPLookupAttempts and IPLookupTimeout bound the advertise-address
	// search (the second is the sleep between attempts).
	IPLookupAttempts int
	IPLookupTimeout  time.Duration
	// LookupTimeout and LookupInterval control lookup retries.
	LookupTimeout  time.Duration
	LookupInterval time.Duration
	// APIVersion overrides version discovery (ipa-ironic-api-version).
	APIVersion string
	// Insecure skips verification of the Ironic API's TLS certificate.
	Insecure bool
	// CAFile verifies the Ironic API's certificate when set.
	CAFile string
	// AgentToken is a pre-generated token (virtual media boots).
	AgentToken string
	// Standalone serves the API with no lookup and no heartbeat.
	Standalone bool
	// BlockDevices, when set, restricts the candidate disks to these paths;
	// it is the only way loop devices become candidates.
	BlockDevices []string
	// DownloadConnectTimeout bounds connecting to an image server and the
	// gap between received bytes.
	DownloadConnectTimeout time.Duration
	// BootIF is the PXE MAC (BOOTIF), normalized.
	BootIF string
	// LookupMACs, when set, replace the MACs read from the NICs (local runs).
	LookupMACs []string
	// IPConfig is the kernel "ip=" setting: "" or "dhcp" for DHCP on every
	// NIC, "off"/"none" for no configuration, or a static
	// <client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf> spec.
	IPConfig string
	// TLSCertFile and TLSKeyFile switch the agent API to HTTPS.
	TLSCertFile string
	TLSKeyFile  string
	// Debug turns on debug logging (ipa-debug).
	Debug bool
	// SysRoot is where sysfs and procfs are read ("/" in production).
	SysRoot string
	// HardwareInitDelay is waited before the hardware is read
	// (ipa-hardware-initialization-delay).
	HardwareInitDelay time.Duration
	// DiskWaitAttempts and DiskWaitDelay bound the wait for a usable disk
	// before lookup (ipa-disk-wait-attempts, ipa-disk-wait-delay). When
	// none shows up the agent carries on: a node may be inspected or
	// cleaned without one.
	DiskWaitAttempts int
	DiskWaitDelay    time.Duration
	// GuardSpecialFilesystems makes cleaning refuse disks that hold shared
	// cluster filesystems (ipa-guard-special-filesystems).
	GuardSpecialFilesystems bool
	// InspectionCallbackURL, when set, receives the inventory once at
	// start (ipa-inspection-callback-url).
	InspectionCallbackURL string
	// InspectionCollectors are the collectors to run ("default", "logs").
	InspectionCollectors []string
	// CollectLLDP listens for LLDP on every NIC while the inventory is
	// read, for interfaces[].lldp (ipa-collect-lldp); LLDPTimeout bounds
	// the wait (ipa-lldp-timeout).
	CollectLLDP bool
	LLDPTimeout time.Duration
	// IgnoreBootloaderFailure is the default of install_bootloader's
	// ignore_bootloader_failure (ipa-ignore-bootloader-failure).
	IgnoreBootloaderFailure bool
	// EnableAutoTLS serves the API over HTTPS with a self-signed
	// certificate when Ironic supports it (API 1.68+) and no certificate
	// file is given.
	EnableAutoTLS bool
	// TLSCertificateCurve is auto-TLS's key curve: p256, p384, p521.
	TLSCertificateCurve string
	// CertFile and KeyFile are a client certificate for the Ironic API.
	CertFile string
	KeyFile  string
	// RescueRoot is where rescue.finalize_rescue writes the rescue
	// password (etc/ipa-rescue-config/…); "" means "/" in the ramdisk and
	// a temporary directory elsewhere.
	RescueRoot string
}

// DefaultConfig returns IPA's defaults (contract §3.6).
func DefaultConfig() Config {
	return Config{
		ListenHost:              "::",
		ListenPort:              9999,
		AdvertiseProtocol:       "http",
		IPLookupAttempts:        6,
		IPLookupTimeout:         10 * time.Second,
		LookupTimeout:           600 * time.Second,
		LookupInterval:          time.Second,
		DownloadConnectTimeout:  60 * time.Second,
		SysRoot:                 "/",
		DiskWaitAttempts:        10,
		DiskWaitDelay:           3 * time.Second,
		GuardSpecialFilesystems: true,
		InspectionCollectors:    []string{"default"},
		LLDPTimeout:             30 * time.Second,
		EnableAutoTLS:           true,
		TLSCertificateCurve:     "p384",
	}
}

// Param is one setting that can be given on the kernel command line and as
// a flag of the same name.
type Param struct {
	Name  string
	Usage string
	// IsBool marks parameters that may be given without a value.
	IsBool bool
	set    func(c *Config, v string) error
}

// Set parses v into c.
func (p Param) Set(c *Config, v string) error {
	if err := p.set(c, v); err != nil {
		return fmt.Errorf("%s=%q: %w", p.Name, v, err)
	}
	return nil
}

func str(f func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func list(f func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*f(c) = out
		return nil
	}
}

func integer(f func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("not a non-negative integer")
		}
		*f(c) = n
		return nil
	}
}

func seconds(f func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		if d, err := time.ParseDuration(v); err == nil {
			*f(c) = d
			return nil
		}
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s < 0 {
			return fmt.Errorf("not a number of seconds")
		}
		*f(c) = time.Duration(s * float64(time.Second))
		return nil
	}
}

func boolean(f func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "", "1", "true", "yes", "on":
			*f(c) = true
		case "0", "false", "no", "off":
			*f(c) = false
		default:
			return fmt.Errorf("not a boolean")
		}
		return nil
	}
}

// Params lists every parameter, in the order flags show them.
func Params() []Param {
	return []Param{
		{Name: "ipa-api-url", Usage: "Ironic API URL(s), comma-separated", set: list(func(c *Config) *[]string { return &c.APIURLs })},
		{Name: "ipa-global-request-id", Usage: "request ID sent as X-OpenStack-Request-ID", set: str(func(c *Config) *string { return &c.RequestID })},
		{Name: "ipa-listen-host", Usage: "address the agent API listens on", set: str(func(c *Config) *string { return &c.ListenHost })},
		{Name: "ipa-listen-port", Usage: "port the agent API listens on", set: integer(func(c *Config) *int { return &c.ListenPort })},
		{Name: "ipa-advertise-host", Usage: "host in the callback URL (default: source address of the route to the API)", set: str(func(c *Config) *string { return &c.AdvertiseHost })},
		{Name: "ipa-advertise-port", Usage: "port in the callback URL (default: the listen port)", set: integer(func(c *Config) *int { return &c.AdvertisePort })},
		{Name: "ipa-advertise-protocol", Usage: "http or https", set: str(func(c *Config) *string { return &c.AdvertiseProtocol })},
		{Name: "ipa-ip-lookup-attempts", Usage: "tries to find the advertise address", set: integer(func(c *Config) *int { return &c.IPLookupAttempts })},
		{Name: "ipa-ip-lookup-timeout", Usage: "seconds between advertise address tries", set: seconds(func(c *Config) *time.Duration { return &c.IPLookupTimeout })},
		{Name: "ipa-lookup-timeout", Usage: "seconds to keep retrying lookup", set: seconds(func(c *Config) *time.Duration { return &c.LookupTimeout })},
		{Name: "ipa-lookup-interval", Usage: "first lookup retry interval, seconds", set: seconds(func(c *Config) *time.Duration { return &c.LookupInterval })},
		{Name: "ipa-ironic-api-version", Usage: "Ironic API version to assume instead of discovering it", set: str(func(c *Config) *string { return &c.APIVersion })},
		{Name: "ipa-insecure", Usage: "do not verify the Ironic API's TLS certificate", IsBool: true, set: boolean(func(c *Config) *bool { return &c.Insecure })},
		{Name: "ipa-cafile", Usage: "CA bundle that verifies the Ironic API", set: str(func(c *Config) *string { return &c.CAFile })},
		{Name: "ipa-agent-token", Usage: "pre-generated agent token", set: str(func(c *Config) *string { return &c.AgentToken })},
		{Name: "ipa-standalone", Usage: "serve the API with no lookup and no heartbeat", IsBool: true, set: boolean(func(c *Config) *bool { return &c.Standalone })},
		{Name: "ipa-block-devices", Usage: "comma-separated disks that may be written (the only way loop devices become candidates)", set: list(func(c *Config) *[]string { return &c.BlockDevices })},
		{Name: "ipa-image-download-connection-timeout", Usage: "seconds to connect to an image server, and longest gap between received bytes", set: seconds(func(c *Config) *time.Duration { return &c.DownloadConnectTimeout })},
		{Name: "ipa-lookup-macs", Usage: "MACs to look up instead of the NICs' (local runs)", set: list(func(c *Config) *[]string { return &c.LookupMACs })},
		{Name: "ipa-tls-cert-file", Usage: "certificate for HTTPS on the agent API", set: str(func(c *Config) *string { return &c.TLSCertFile })},
		{Name: "ipa-tls-key-file", Usage: "key for HTTPS on the agent API", set: str(func(c *Config) *string { return &c.TLSKeyFile })},
		{Name: "ipa-debug", Usage: "debug logging", IsBool: true, set: boolean(func(c *Config) *bool { return &c.Debug })},
		{Name: "ipa-hardware-initialization-delay", Usage: "seconds to wait before reading the hardware", set: seconds(func(c *Config) *time.Duration { return &c.HardwareInitDelay })},
		{Name: "ipa-disk-wait-attempts", Usage: "tries to find a usable disk before lookup", set: integer(func(c *Config) *int { return &c.DiskWaitAttempts })},
		{Name: "ipa-disk-wait-delay", Usage: "seconds between disk tries", set: seconds(func(c *Config) *time.Duration { return &c.DiskWaitDelay })},
		{Name: "ipa-guard-special-filesystems", Usage: "refuse to clean disks holding shared cluster filesystems", IsBool: true, set: boolean(func(c *Config) *bool { return &c.GuardSpecialFilesystems })},
		{Name: "ipa-inspection-callback-url", Usage: "URL that receives the hardware inventory at start", set: str(func(c *Config) *string { return &c.InspectionCallbackURL })},
		{Name: "ipa-inspection-collectors", Usage: "inspection collectors, comma-separated (default, logs)", set: list(func(c *Config) *[]string { return &c.InspectionCollectors })},
		{Name: "ipa-collect-lldp", Usage: "listen for LLDP on every NIC and report it in the inventory", IsBool: true, set: boolean(func(c *Config) *bool { return &c.CollectLLDP })},
		{Name: "ipa-lldp-timeout", Usage: "seconds to wait for LLDP frames", set: seconds(func(c *Config) *time.Duration { return &c.LLDPTimeout })},
		{Name: "ipa-ignore-bootloader-failure", Usage: "turn bootloader installation failures into warnings", IsBool: true, set: boolean(func(c *Config) *bool { return &c.IgnoreBootloaderFailure })},
		{Name: "ipa-enable-auto-tls", Usage: "serve the API over HTTPS with a self-signed certificate when Ironic supports it", IsBool: true, set: boolean(func(c *Config) *bool { return &c.EnableAutoTLS })},
		{Name: "ipa-tls-certificate-curve", Usage: "auto-TLS key curve: p256, p384 or p521", set: str(func(c *Config) *string { return &c.TLSCertificateCurve })},
		{Name: "ipa-certfile", Usage: "client certificate for the Ironic API", set: str(func(c *Config) *string { return &c.CertFile })},
		{Name: "ipa-keyfile", Usage: "client key for the Ironic API", set: str(func(c *Config) *string { return &c.KeyFile })},
		{Name: "BOOTIF", Usage: "PXE boot interface MAC", set: func(c *Config, v string) error { c.BootIF = v; return nil }},
		{Name: "ip", Usage: "network setup: dhcp (default), off, or <client>:<server>:<gw>:<netmask>:<host>:<dev>:<autoconf>", set: str(func(c *Config) *string { return &c.IPConfig })},
	}
}

// ParseKernelCmdline splits a kernel command line into key=value pairs.
// Tokens without "=" are ignored, as IPA does; double quotes group spaces.
func ParseKernelCmdline(r io.Reader) (map[string]string, error) {
	b, err := io.ReadAll(bufio.NewReader(io.LimitReader(r, 64<<10)))
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	out := map[string]string{}
	var tok strings.Builder
	inQuote := false
	flush := func() {
		t := tok.String()
		tok.Reset()
		if k, v, ok := strings.Cut(t, "="); ok && k != "" {
			out[k] = strings.ReplaceAll(v, `"`, "")
		}
	}
	for _, ch := range string(b) {
		switch {
		case ch == '"':
			inQuote = !inQuote
			tok.WriteRune(ch)
		case (ch == ' ' || ch == '\t' || ch == '\n') && !inQuote:
			flush()
		default:
			tok.WriteRune(ch)
		}
	}
	flush()
	return out, nil
}

// ApplyKernelParams sets every known parameter present in params; unknown
// keys are ignored (the kernel line holds many of them).
func (c *Config) ApplyKernelParams(params map[string]string) error {
	for _, p := range Params() {
		if v, ok := params[p.Name]; ok {
			if err := p.Set(c, v); err != nil {
				return err
			}
		}
	}
	return nil
}
