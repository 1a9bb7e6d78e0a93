package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/internal/kernelcmdline"
	"github.com/rivetmetal/rivet/wire"
)

// fuzzAgent is an agent that can validate commands but reaches no disk, no
// NIC and no power switch: its disk list is one path that does not exist,
// its sysfs an empty directory.
func fuzzAgent(f *testing.F) *Agent {
	cfg := standaloneConfig("/nonexistent/rivet-fuzz-disk")
	cfg.SysRoot, cfg.RescueRoot = f.TempDir(), f.TempDir()
	a, err := New(cfg, Options{Power: &fakePower{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	if err := a.selectManagers(f.Context()); err != nil { // as Run does before it serves
		f.Fatal(err)
	}
	return a
}

// FuzzCommandRequest feeds POST /v1/commands bodies to the body decoder
// and, for those that decode, to the named command's parameter validation
// (never to the command itself). Nothing may panic; a refusal is always
// an agent error with a 4xx status; an accepted body names a command.
func FuzzCommandRequest(f *testing.F) {
	a := fuzzAgent(f)
	exts := map[string]map[string]Command{}
	for _, e := range []Extension{standby{a}, deploy{a}, clean{a}, service{a}, imageExt{a}, logExt{a}, rescue{a}, system{a}, poll{a}} {
		exts[e.Name()] = map[string]Command{}
		for _, c := range e.Commands() {
			exts[e.Name()][c.Name] = c
		}
	}
	sha := strings.Repeat("ab", 32)
	for _, seed := range []string{
		`{"name":"standby.get_partition_uuids","params":{}}`,
		`{"name":"standby.prepare_image","params":{"image_info":{"id":"x","urls":["http://127.0.0.1/x"],"os_hash_algo":"sha256","os_hash_value":"` + sha + `","disk_format":"qcow2"}}}`,
		`{"name":"standby.prepare_image","params":{"image_info":{"id":"x","urls":["http://h/x"],"checksum":"` + sha[:32] + `","image_type":"partition","root_mb":"10","deploy_boot_mode":"uefi"},"configdrive":"H4sIAAAAAAAA/w=="}}`,
		`{"name":"deploy.execute_deploy_step","params":{"step":{"interface":"deploy","step":"write_image","priority":80,"args":{"image_info":{"id":"x","urls":["http://h/x"],"checksum":"http://h/SHA256SUMS"}}},"node":{"uuid":"u"},"ports":[],"deploy_version":{"generic_hardware_manager":"1.2"}}}`,
		`{"name":"clean.execute_clean_step","params":{"step":{"interface":"deploy","step":"erase_devices_metadata","priority":99},"node":{},"ports":[],"clean_version":{}}}`,
		`{"name":"image.install_bootloader","params":{"root_uuid":"x","efi_system_part_uuid":"y","target_boot_mode":"uefi"}}`,
		`{"name":"rescue.finalize_rescue","params":{"rescue_password":"$6$x","hashed":true}}`,
		`{"name":"flow.start_flow","params":{"flow":[{"standby.sync":{}}]}}`,
		`{"name":"standby.sync","params":{}} trailing`,
		`{"name":"x","params":[]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/commands/", bytes.NewReader(body))
		w := httptest.NewRecorder()
		cr, err := decodeCommandRequest(w, req, 1<<20)
		if err != nil {
			code, fault := httpError(err)
			if code < 400 || code >= 500 || fault.FaultCode != wire.FaultClient {
				t.Fatalf("body refused with %d %+v", code, fault)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not one JSON value: %q", body)
		}
		ext, name, ok := strings.Cut(cr.Name, ".")
		cmd, known := exts[ext][name]
		if !ok || !known || len(cr.Params) == 0 || cr.Params[0] != '{' {
			return
		}
		if _, err := cmd.Prepare(cr.Params); err != nil {
			if code, _ := httpError(err); code >= 500 {
				t.Fatalf("%s: parameters refused with a server error %d: %v", cr.Name, code, err)
			}
		}
	})
}

// FuzzKernelCmdline parses arbitrary command lines and applies them:
// nothing panics, and what ApplyKernelParams accepts holds values the
// agent can start with.
func FuzzKernelCmdline(f *testing.F) {
	for _, seed := range []string{
		`ipa-api-url=http://192.0.2.1:6385 BOOTIF=01-52-54-00-12-34-56 ipa-debug=1 initrd=ramdisk`,
		`ipa-insecure=1 ipa-cafile=/etc/rivet/ca.crt ipa-tls-min-version=1.3 ipa-tls-cipher-suites=ECDHE-RSA-AES256-GCM-SHA384`,
		`rivet-max-decoder-memory=1G ipa-image-download-connection-retries=3 "ipa-global-request-id=req-1 2"`,
		`ip=192.0.2.5::192.0.2.1:255.255.255.0:node:eth0:off ipa-collect-lldp=1 boot_method=vmedia`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		params, err := kernelcmdline.Parse(strings.NewReader(line))
		if err != nil {
			t.Fatal(err)
		}
		for k := range params {
			if k == "" || strings.ContainsAny(k, " \t\n") {
				t.Fatalf("key %q from %q", k, line)
			}
		}
		cfg := DefaultConfig()
		if err := cfg.ApplyKernelParams(params); err != nil {
			return
		}
		if cfg.MaxDecoderMemory <= 0 || cfg.ListenPort < 0 || (cfg.TLSMinVersion != "1.2" && cfg.TLSMinVersion != "1.3") {
			t.Fatalf("accepted %q into %+v", line, cfg)
		}
		if cfg.TLSCipherSuites != "" {
			if _, err := ParseCipherSuites(cfg.TLSCipherSuites); err != nil {
				t.Fatalf("accepted cipher suites %q: %v", cfg.TLSCipherSuites, err)
			}
		}
	})
}

// FuzzImageInfo decodes image_info as Ironic sends it and validates it
// with MD5 refused and allowed: nothing panics, errors are 400s, and
// allowing MD5 never turns an accepted image_info into a refused one.
func FuzzImageInfo(f *testing.F) {
	sha := strings.Repeat("cd", 32)
	for _, seed := range []string{
		`{"id":"x","urls":["http://h/x"],"os_hash_algo":"sha256","os_hash_value":"` + sha + `"}`,
		`{"id":"x","urls":["http://h/x"],"checksum":"` + sha[:32] + `","disk_format":null,"container_format":"bare"}`,
		`{"id":"x","urls":["file:///x"],"os_hash_algo":"md5","os_hash_value":"` + sha[:32] + `","image_type":"partition","root_gb":"4","swap_mb":1,"ephemeral_mb":2,"ephemeral_format":"ext4"}`,
		`{"id":"x","urls":["http://h/x"],"checksum":"https://h/SHA256SUMS","proxies":{"http":"http://p"},"no_proxy":"a,b","configdrive":"aGVsbG8="}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var info wire.ImageInfo
		if err := json.Unmarshal(b, &info); err != nil {
			return
		}
		refused := validateImageInfo(&info, nil, false)
		allowed := validateImageInfo(&info, nil, true)
		for _, err := range []error{refused, allowed} {
			if err != nil {
				if code, _ := httpError(err); code != http.StatusBadRequest {
					t.Fatalf("image_info refused with %d: %v", code, err)
				}
			}
		}
		if refused == nil && allowed != nil {
			t.Fatalf("allowing MD5 refused what was accepted: %v", allowed)
		}
	})
}
