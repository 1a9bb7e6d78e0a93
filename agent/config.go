package agent

import (
	"fmt"
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
	// ListenHost and ListenPort are where the agent API listens. An empty
	// ListenHost is the wildcard address, except for a standalone agent
	// without a token (nothing authenticates its API), which listens on
	// loopback only; see EffectiveListenHost.
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
	// Insecure skips verification of the TLS certificates of the Ironic
	// API, the inspection callback and the image servers (ipa-insecure).
	Insecure bool
	// CAFile is a PEM bundle trusted, besides the system's roots, for the
	// Ironic API, the inspection callback and image downloads. Empty
	// means RamdiskCAFile when the ramdisk carries one.
	CAFile string
	// TLSMinVersion is the lowest TLS version of the agent's connections
	// and its API: "1.2" or "1.3" (ipa-tls-min-version).
	TLSMinVersion string
	// TLSCipherSuites restricts the TLS 1.2 cipher suites, a
	// colon-separated list of OpenSSL or IANA names
	// (ipa-tls-cipher-suites); empty means Go's secure defaults.
	TLSCipherSuites string
	// HTTPRequestTimeout bounds each request to the Ironic API and the
	// inspection callback (ipa-http-request-timeout).
	HTTPRequestTimeout time.Duration
	// NetworkInterface, when set, takes the advertised address from this
	// NIC instead of the route to the API (ipa-network-interface).
	NetworkInterface string
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
	// DownloadRetries and DownloadRetryInterval are the image download's
	// retry policy (ipa-image-download-connection-retries and
	// -retry-interval): tries after the first, and the wait between.
	DownloadRetries       int
	DownloadRetryInterval time.Duration
	// DownloadMaxDuration, when positive, fails an image download that
	// takes longer (ipa-image-download-max-duration).
	DownloadMaxDuration time.Duration
	// MaxDecoderMemory bounds the memory an image may make the decoders
	// take: the zstd window, the xz dictionaries (two may be live, so one
	// may take half), the qcow2 tables (rivet-max-decoder-memory, in MiB
	// on the command line).
	MaxDecoderMemory int64
	// AllowMD5 accepts MD5 image checksums, which are refused by default
	// (Ironic deprecated them); Ironic's agent_md5_checksum_enable=false
	// refuses them whatever this says (rivet-allow-md5-checksum).
	AllowMD5 bool
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
	// Ignored holds the IPA parameters given that have no effect in this
	// agent (name → value), for the caller to log.
	Ignored map[string]string
}

// RamdiskCAFile is where a CA bundle built into the deploy ramdisk lives
// (rivet-initramfs -ca-file); the agent trusts it when no ipa-cafile is
// given.
const RamdiskCAFile = "/etc/rivet/ca.crt"

// DefaultMaxDecoderMemory is MaxDecoderMemory's default (128 MiB).
const DefaultMaxDecoderMemory = 128 << 20

// BaseMemory is what the agent needs besides the decoders: the image
// pipeline's buffers (32 MiB of raw fetch buffers, or 20 MiB of input and
// decoded buffers), the qcow2 window and table reads (about 10 MiB), the
// in-memory log (4 MiB), the API, the inventory and the Go runtime.
const BaseMemory = 64 << 20

// MemoryLimit is the agent's soft memory limit for the Go runtime
// (runtime/debug.SetMemoryLimit): BaseMemory plus MaxDecoderMemory. The
// garbage collector works harder as the heap nears it, so garbage (a
// decoder's discarded dictionary, a large request body) does not pile up
// on top of what is live.
func (c *Config) MemoryLimit() int64 { return BaseMemory + c.MaxDecoderMemory }

// EffectiveListenHost is the address the API listens on: ListenHost when
// given; otherwise loopback for a standalone agent without a token (its
// API would take commands from anyone), else the wildcard address.
func (c *Config) EffectiveListenHost() string {
	switch {
	case c.ListenHost != "":
		return c.ListenHost
	case c.Standalone && c.AgentToken == "":
		return "127.0.0.1"
	}
	return "::"
}

// DefaultConfig returns IPA's defaults (contract §3.6).
func DefaultConfig() Config {
	return Config{
		ListenPort:              9999,
		AdvertiseProtocol:       "http",
		IPLookupAttempts:        6,
		IPLookupTimeout:         10 * time.Second,
		LookupTimeout:           600 * time.Second,
		LookupInterval:          time.Second,
		DownloadConnectTimeout:  60 * time.Second,
		DownloadRetries:         9,
		DownloadRetryInterval:   10 * time.Second,
		HTTPRequestTimeout:      30 * time.Second,
		TLSMinVersion:           "1.2",
		MaxDecoderMemory:        DefaultMaxDecoderMemory,
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
	// Ignored, when set, says why an IPA parameter has no effect here: it
	// is accepted (so a command line written for IPA works) and recorded
	// in Config.Ignored.
	Ignored string
	set     func(c *Config, v string) error
}

// Set parses v into c.
func (p Param) Set(c *Config, v string) error {
	if p.Ignored != "" {
		if c.Ignored == nil {
			c.Ignored = map[string]string{}
		}
		c.Ignored[p.Name] = v
		return nil
	}
	if err := p.set(c, v); err != nil {
		return fmt.Errorf("%s=%q: %w", p.Name, v, err)
	}
	return nil
}

// IgnoredReason returns why the named parameter has no effect, "" for a
// parameter the agent uses.
func IgnoredReason(name string) string {
	for _, p := range Params() {
		if p.Name == name {
			return p.Ignored
		}
	}
	return ""
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

// mebibytes parses a size in MiB ("256"), or with a unit ("256M", "1G",
// "512MiB", "1GiB").
func mebibytes(f func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		num, unit := v, "M"
		if i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			num, unit = v[:i], strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(v[i:]), "IB"), "B")
		}
		n, err := strconv.ParseInt(num, 10, 64)
		shift, ok := map[string]uint{"M": 20, "G": 30}[unit]
		if err != nil || !ok || n <= 0 || n > 1<<20 {
			return fmt.Errorf("not a size in MiB (e.g. 256, 256M, 1G)")
		}
		*f(c) = n << shift
		return nil
	}
}

func tlsVersion(f func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v != "1.2" && v != "1.3" {
			return fmt.Errorf("not a TLS version (1.2 or 1.3)")
		}
		*f(c) = v
		return nil
	}
}

func cipherSuites(f func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if _, err := ParseCipherSuites(v); err != nil {
			return err
		}
		*f(c) = v
		return nil
	}
}

func apiURLs(f func(*Config) *[]string) func(*Config, string) error {
	urls := list(f)
	return func(c *Config, v string) error {
		if strings.EqualFold(strings.TrimSpace(v), "mdns") {
			return fmt.Errorf("finding Ironic by mDNS is not supported; give the API URL(s)")
		}
		return urls(c, v)
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
	return append([]Param{
		{Name: "ipa-api-url", Usage: "Ironic API URL(s), comma-separated", set: apiURLs(func(c *Config) *[]string { return &c.APIURLs })},
		{Name: "ipa-global-request-id", Usage: "request ID sent as X-OpenStack-Request-ID", set: str(func(c *Config) *string { return &c.RequestID })},
		{Name: "ipa-listen-host", Usage: "address the agent API listens on (default: the wildcard; 127.0.0.1 for a standalone agent without a token)", set: str(func(c *Config) *string { return &c.ListenHost })},
		{Name: "ipa-listen-port", Usage: "port the agent API listens on", set: integer(func(c *Config) *int { return &c.ListenPort })},
		{Name: "ipa-advertise-host", Usage: "host in the callback URL (default: source address of the route to the API)", set: str(func(c *Config) *string { return &c.AdvertiseHost })},
		{Name: "ipa-advertise-port", Usage: "port in the callback URL (default: the listen port)", set: integer(func(c *Config) *int { return &c.AdvertisePort })},
		{Name: "ipa-advertise-protocol", Usage: "http or https", set: str(func(c *Config) *string { return &c.AdvertiseProtocol })},
		{Name: "ipa-ip-lookup-attempts", Usage: "tries to find the advertise address", set: integer(func(c *Config) *int { return &c.IPLookupAttempts })},
		{Name: "ipa-ip-lookup-timeout", Usage: "seconds between advertise address tries", set: seconds(func(c *Config) *time.Duration { return &c.IPLookupTimeout })},
		{Name: "ipa-lookup-timeout", Usage: "seconds to keep retrying lookup", set: seconds(func(c *Config) *time.Duration { return &c.LookupTimeout })},
		{Name: "ipa-lookup-interval", Usage: "first lookup retry interval, seconds", set: seconds(func(c *Config) *time.Duration { return &c.LookupInterval })},
		{Name: "ipa-ironic-api-version", Usage: "Ironic API version to assume instead of discovering it", set: str(func(c *Config) *string { return &c.APIVersion })},
		{Name: "ipa-insecure", Usage: "do not verify the TLS certificates of the Ironic API, the inspection callback and image servers", IsBool: true, set: boolean(func(c *Config) *bool { return &c.Insecure })},
		{Name: "ipa-cafile", Usage: "CA bundle trusted besides the system roots for the Ironic API, inspection and image downloads (default: " + RamdiskCAFile + " when the ramdisk has one)", set: str(func(c *Config) *string { return &c.CAFile })},
		{Name: "ipa-tls-min-version", Usage: "lowest TLS version: 1.2 or 1.3", set: tlsVersion(func(c *Config) *string { return &c.TLSMinVersion })},
		{Name: "ipa-tls-cipher-suites", Usage: "TLS 1.2 cipher suites, colon-separated OpenSSL or IANA names", set: cipherSuites(func(c *Config) *string { return &c.TLSCipherSuites })},
		{Name: "ipa-http-request-timeout", Usage: "seconds a request to the Ironic API or the inspection callback may take", set: seconds(func(c *Config) *time.Duration { return &c.HTTPRequestTimeout })},
		{Name: "ipa-network-interface", Usage: "NIC whose address is advertised (default: the source address of the route to the API)", set: str(func(c *Config) *string { return &c.NetworkInterface })},
		{Name: "ipa-agent-token", Usage: "pre-generated agent token", set: str(func(c *Config) *string { return &c.AgentToken })},
		{Name: "ipa-standalone", Usage: "serve the API with no lookup and no heartbeat", IsBool: true, set: boolean(func(c *Config) *bool { return &c.Standalone })},
		{Name: "ipa-block-devices", Usage: "comma-separated disks that may be written (the only way loop devices become candidates)", set: list(func(c *Config) *[]string { return &c.BlockDevices })},
		{Name: "ipa-image-download-connection-timeout", Usage: "seconds to connect to an image server, and longest gap between received bytes", set: seconds(func(c *Config) *time.Duration { return &c.DownloadConnectTimeout })},
		{Name: "ipa-image-download-connection-retries", Usage: "times a failed image download (connection, HTTP error, broken stream) is retried", set: integer(func(c *Config) *int { return &c.DownloadRetries })},
		{Name: "ipa-image-download-connection-retry-interval", Usage: "seconds between image download retries", set: seconds(func(c *Config) *time.Duration { return &c.DownloadRetryInterval })},
		{Name: "ipa-image-download-max-duration", Usage: "seconds an image download may take in all, retries included (0: no limit)", set: seconds(func(c *Config) *time.Duration { return &c.DownloadMaxDuration })},
		{Name: "rivet-max-decoder-memory", Usage: "MiB an image may make the decoders take (zstd window, xz dictionary, qcow2 tables); larger images are refused", set: mebibytes(func(c *Config) *int64 { return &c.MaxDecoderMemory })},
		{Name: "rivet-allow-md5-checksum", Usage: "accept MD5 image checksums (refused by default; Ironic deprecated them)", IsBool: true, set: boolean(func(c *Config) *bool { return &c.AllowMD5 })},
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
		{Name: "lldp-timeout", Usage: "IPA's older name of ipa-lldp-timeout", set: seconds(func(c *Config) *time.Duration { return &c.LLDPTimeout })},
		{Name: "ipa-ignore-bootloader-failure", Usage: "turn bootloader installation failures into warnings", IsBool: true, set: boolean(func(c *Config) *bool { return &c.IgnoreBootloaderFailure })},
		{Name: "ipa-enable-auto-tls", Usage: "serve the API over HTTPS with a self-signed certificate when Ironic supports it", IsBool: true, set: boolean(func(c *Config) *bool { return &c.EnableAutoTLS })},
		{Name: "ipa-tls-certificate-curve", Usage: "auto-TLS key curve: p256, p384 or p521", set: str(func(c *Config) *string { return &c.TLSCertificateCurve })},
		{Name: "ipa-certfile", Usage: "client certificate for the Ironic API", set: str(func(c *Config) *string { return &c.CertFile })},
		{Name: "ipa-keyfile", Usage: "client key for the Ironic API", set: str(func(c *Config) *string { return &c.KeyFile })},
		{Name: "BOOTIF", Usage: "PXE boot interface MAC", set: func(c *Config, v string) error { c.BootIF = v; return nil }},
		{Name: "ip", Usage: "network setup: dhcp (default), off, or <client>:<server>:<gw>:<netmask>:<host>:<dev>:<autoconf>", set: str(func(c *Config) *string { return &c.IPConfig })},
	}, ignoredParams()...)
}

// ignoredParams are IPA's kernel parameters that change nothing in this
// agent, with the reason; they are accepted and logged.
func ignoredParams() []Param {
	var out []Param
	for _, p := range []struct {
		name, why string
		isBool    bool
	}{
		{"ipa-enable-vlan-interfaces", "VLAN interfaces are not brought up from what LLDP reports (give a static ip= on the VLAN device)", false},
		{"ipa-inspection-dhcp-wait-timeout", "the network is configured (ip=, DHCP on every NIC) before inspection starts", false},
		{"ipa-inspection-dhcp-all-interfaces", "the network is configured (ip=, DHCP on every NIC) before inspection starts", true},
		{"ipa-inspection-benchmarks", "no inspection benchmarks are run", false},
		{"ipa-ntp-server", "the clock is not synchronised from NTP", false},
		{"ipa-agent-token-required", "a token is always required once the agent holds one (Zed-era switch)", true},
		{"ipa-use-mdns", "Ironic is not discovered by mDNS; give ipa-api-url", true},
		{"ipa-inject-files-priority", "there is no inject_files deploy step", false},
		{"boot_method", "virtual media parameters (parameters.txt) are not read", false},
	} {
		out = append(out, Param{Name: p.name, Usage: "accepted for IPA compatibility, no effect: " + p.why, Ignored: p.why, IsBool: p.isBool})
	}
	return out
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
