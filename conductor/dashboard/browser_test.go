package dashboard_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/bcrypt"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/wire"
)

// The browser test drives the dashboard of a real conductor (SQLite, its
// HTTP listener on 127.0.0.1, the fake-hardware driver whose nodes boot
// fake agents that really download the image) in Debian's headless
// Chromium over the DevTools protocol, and saves screenshots under
// build/test-artifacts/dashboard/.

// users is the test's Authenticator.
type users struct{ user, pass string }

func (u users) Authenticate(user, pass string) (string, bool) {
	ok := subtle.ConstantTimeCompare([]byte(user), []byte(u.user)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(u.pass)) == 1
	return "admin", ok
}

// require fails under RIVET_REQUIRE_E2E=1 and skips otherwise.
func require(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
		t.Fatalf(format+" (RIVET_REQUIRE_E2E=1)", args...)
	}
	t.Skipf(format+"; set RIVET_REQUIRE_E2E=1 to make this a failure", args...)
}

func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	require(t, "Chromium not installed (scripts/install-deps.sh browser)")
	return ""
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
}

// api calls the conductor's Ironic API.
// The operator's credentials, for the dashboard's login and the API
// (http_basic against an htpasswd file, so history records the user).
const operatorUser, operatorPass = "operator", "correct horse"

type api struct {
	t    *testing.T
	base string
}

func (a api) call(method, path string, body, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.SetBasicAuth(operatorUser, operatorPass)
	req.Header.Set(wire.APIVersionHeader, "1.82")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		json.Unmarshal(data, out) //nolint:errcheck // callers check the status
	}
	return resp.StatusCode
}

// must sends a request that must end in want, retrying while the node is
// locked (409).
func (a api) must(want int, method, path string, body any) {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out map[string]any
		st := a.call(method, path, body, &out)
		if st == want {
			return
		}
		if st != http.StatusConflict || time.Now().After(deadline) {
			a.t.Fatalf("%s %s: %d %v", method, path, st, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a api) state(ident string) string {
	var n map[string]any
	a.call("GET", "/v1/nodes/"+ident, nil, &n)
	s, _ := n["provision_state"].(string)
	return s
}

func (a api) waitState(ident, want string) {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for a.state(ident) != want {
		if time.Now().After(deadline) {
			a.t.Fatalf("node %s did not reach %s (in %s)", ident, want, a.state(ident))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a api) enroll(name, mac string) string {
	a.t.Helper()
	var n map[string]any
	if st := a.call("POST", "/v1/nodes", map[string]any{"name": name, "driver": "fake-hardware"}, &n); st != http.StatusCreated {
		a.t.Fatalf("create %s: %d %v", name, st, n)
	}
	uuid := n["uuid"].(string)
	a.must(http.StatusCreated, "POST", "/v1/ports", map[string]any{"address": mac, "node_uuid": uuid})
	return uuid
}

func (a api) makeAvailable(name string) {
	a.t.Helper()
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/"+name+"/states/provision", map[string]any{"target": "manage"})
	a.waitState(name, "manageable")
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/"+name+"/states/provision", map[string]any{"target": "provide"})
	a.waitState(name, "available")
}

// inspect inspects a manageable node: the conductor boots it into
// inspect wait, and the test posts the inventory as the ramdisk does
// (POST /v1/continue_inspection, without a microversion, as IPA sends it).
func (a api) inspect(name, mac string) {
	a.t.Helper()
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/"+name+"/states/provision", map[string]any{"target": "inspect"})
	a.waitState(name, "inspect wait")
	disk := func(dev, model, serial string, size float64, rotational bool) map[string]any {
		return map[string]any{"name": dev, "model": model, "vendor": "ATA", "size": size, "rotational": rotational, "serial": serial}
	}
	inv := map[string]any{
		"cpu":           map[string]any{"model_name": "AMD EPYC 9354P 32-Core Processor", "count": 64, "architecture": "x86_64"},
		"memory":        map[string]any{"total": 270000000000.0, "physical_mb": 262144},
		"system_vendor": map[string]any{"manufacturer": "Supermicro", "product_name": "AS-1115CS-TNR", "serial_number": "S123456X"},
		"boot":          map[string]any{"current_boot_mode": "uefi"},
		"bmc_address":   "10.10.3.17",
		"disks": []any{disk("/dev/nvme0n1", "SAMSUNG MZQL21T9HCJR", "S64GNE0R101234", 1.92e12, false),
			disk("/dev/sda", "ST8000NM017B", "ZA1B2C3D", 8e12, true)},
		"interfaces": []any{
			map[string]any{"name": "enp65s0f0", "mac_address": mac, "ipv4_address": "10.20.3.17", "speed_mbps": 25000},
			map[string]any{"name": "enp65s0f1", "mac_address": "52:54:00:bb:00:01", "speed_mbps": 25000},
		},
	}
	b, _ := json.Marshal(map[string]any{"inventory": inv, "root_disk": inv["disks"].([]any)[0]})
	resp, err := http.Post(a.base+"/v1/continue_inspection", "application/json", bytes.NewReader(b))
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		a.t.Fatalf("continue_inspection: %d", resp.StatusCode)
	}
	a.waitState(name, "manageable")
}

func (a api) deploy(name string, image []byte) {
	a.t.Helper()
	sum := sha256.Sum256(image)
	patch := []map[string]any{
		{"op": "add", "path": "/instance_info/image_source", "value": a.base + "/images/disk.raw.zst"},
		{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
		{"op": "add", "path": "/instance_info/image_os_hash_value", "value": hex.EncodeToString(sum[:])},
		{"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
	}
	a.must(http.StatusOK, "PATCH", "/v1/nodes/"+name, patch)
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/"+name+"/states/provision", map[string]any{"target": "active"})
}

// browserErrors collects the page's uncaught exceptions, console errors
// and browser log errors (CSP violations among them).
type browserErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (b *browserErrors) add(s string) {
	b.mu.Lock()
	b.msgs = append(b.msgs, s)
	b.mu.Unlock()
}

func (b *browserErrors) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.msgs...)
}

func TestDashboardInChromium(t *testing.T) {
	chromium := findChromium(t)
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "conductor/dashboard/web/static/vendor/chart.umd.js")); err != nil {
		require(t, "the dashboard's chart library is not built (run `make dashboard`)")
	}
	artefacts := filepath.Join(root, "build/test-artifacts/dashboard")
	if err := os.MkdirAll(artefacts, 0o755); err != nil {
		t.Fatal(err)
	}

	// The conductor.
	dir := t.TempDir()
	// The image is served zstd-compressed (4 MiB decoded), so the agents'
	// deploy timings have a decode stage.
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	image := zw.EncodeAll(bytes.Repeat([]byte("rivet-dashboard!"), 1<<18), nil)
	zw.Close()
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "images", "disk.raw.zst"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(operatorPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	userFile := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(userFile, []byte(operatorUser+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var url string
	agentCfg := fakeagent.Config{WriteDuration: 8 * time.Second, WriteChunks: 16}
	machines := fakeagent.NewMachines(drv, agentCfg, func() string { return url })
	defer machines.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := conductor.New(context.Background(), conductor.Config{
		Listen: "127.0.0.1:0", DBPath: filepath.Join(dir, "rivet.db"), ImageDir: filepath.Join(dir, "images"),
		Drivers: []power.Driver{drv},
		Provision: provision.Config{
			CallbackTimeout: time.Minute, CheckInterval: 100 * time.Millisecond, ProgressPollInterval: 100 * time.Millisecond,
			PowerOffRetries: 5, PowerOffInterval: 20 * time.Millisecond, PowerStateInterval: 10 * time.Millisecond,
			PowerStateTimeout: 2 * time.Second, CommandWaitInterval: 20 * time.Millisecond, StateDir: filepath.Join(dir, "state"),
			DisableAutomatedClean: true, // provide goes straight to available
		},
		Agent:         agentclient.Config{Timeout: 5 * time.Second, RetryDelay: 10 * time.Millisecond},
		Auth:          auth.Config{Strategy: auth.HTTPBasic, UserFile: userFile},
		DashboardAuth: users{operatorUser, operatorPass},
		Logger:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	url = c.URL()
	cctx, stopConductor := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	defer func() {
		stopConductor()
		if err := <-done; err != nil {
			t.Errorf("conductor: %v", err)
		}
	}()
	a := api{t: t, base: url}

	// The browser.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(1366, 768),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true), chromedp.Flag("mute-audio", true),
		chromedp.Flag("no-proxy-server", true), chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	// The page's uncaught exceptions, console errors and browser log errors
	// (CSP violations among them). Console starts the browser.
	var errs browserErrors
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The one expected: the deliberate wrong login answers 401.
			wrongLogin := strings.Contains(m.Text, "status of 401") && strings.HasSuffix(m.URL, "/dashboard/login")
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !strings.Contains(m.Text, "net::ERR_") && !wrongLogin {
				errs.add(string(m.Type) + ": " + m.Text + " " + m.URL)
			}
		}
	}()
	// step bounds one browser action.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var shots []string
	shot := func(name string, full bool) {
		t.Helper()
		action := chromedp.CaptureScreenshot()
		if full {
			action = chromedp.FullScreenshot(100)
		}
		png, err := chromedp.Run(bctx, action)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(artefacts, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		shots = append(shots, p)
	}
	evalBool := func(js string) bool {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	evalInt := func(js string) int {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	evalString := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	// waitJS polls a JavaScript condition.
	waitJS := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !evalBool(js) {
			if time.Now().After(deadline) {
				shot("failed-"+strings.ReplaceAll(what, " ", "-"), true)
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	// Log in.
	step("open the dashboard", chromedp.Navigate(url+"/dashboard/"), chromedp.WaitVisible(css(`#username`)))
	shot("01-login", false)
	step("log in with a wrong password",
		chromedp.SendKeys(css(`#username`), "operator"), chromedp.SendKeys(css(`#password`), "wrong"),
		chromedp.Submit(css(`#password`)), chromedp.WaitVisible(css(`#login-error`)))
	step("log in",
		chromedp.SendKeys(css(`#username`), "operator"), chromedp.SendKeys(css(`#password`), "correct horse"),
		chromedp.Submit(css(`#password`)), chromedp.WaitVisible(css(`#fleet`)))
	waitJS("the live stream", `document.getElementById('live').classList.contains('live')`)

	// Nodes appear as they are enrolled.
	n1 := a.enroll("n1-rack3", "52:54:00:aa:00:01")
	n2 := a.enroll("n2-rack3", "52:54:00:aa:00:02")
	a.enroll("n3-rack4", "52:54:00:aa:00:03")
	waitJS("three rows", `document.querySelectorAll('#fleet tbody tr').length === 3`)
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/n2-rack3/maintenance", map[string]any{"reason": "disk replacement"})
	waitJS("n2 in maintenance", fmt.Sprintf(`!!document.querySelector('tr[data-uuid="%s"] .maint')`, n2))

	// A deploy: its progress bar moves, then the node goes active.
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/n1-rack3/states/provision", map[string]any{"target": "manage"})
	a.waitState("n1-rack3", "manageable")
	a.inspect("n1-rack3", "52:54:00:aa:00:01")
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/n1-rack3/states/provision", map[string]any{"target": "provide"})
	a.waitState("n1-rack3", "available")
	a.makeAvailable("n3-rack4")
	a.deploy("n1-rack3", image)
	bar := fmt.Sprintf(`document.querySelector('tr[data-uuid="%s"] [role=progressbar]')`, n1)
	waitJS("n1's progress bar", `!!`+bar)
	var seen []int
	midShot := false
	deadline := time.Now().Add(90 * time.Second)
	for {
		if evalString(fmt.Sprintf(`document.querySelector('tr[data-uuid="%s"]').dataset.state`, n1)) == "active" {
			break
		}
		v := evalInt(`(() => { const b = ` + bar + `; return b ? Number(b.getAttribute('aria-valuenow') || -1) : -1 })()`)
		if v >= 0 && (len(seen) == 0 || seen[len(seen)-1] != v) {
			seen = append(seen, v)
		}
		if !midShot && v >= 25 && v <= 85 {
			shot("02-fleet-deploy-progress", false)
			midShot = true
		}
		if time.Now().After(deadline) {
			shot("failed-deploy", true)
			t.Fatalf("n1 did not become active in the page (progress seen %v, API state %s)", seen, a.state("n1-rack3"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(seen) < 3 || seen[len(seen)-1] <= seen[0] {
		t.Fatalf("the progress bar did not move: values seen %v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("the progress bar went back: %v", seen)
		}
	}
	t.Logf("progress bar values seen: %v", seen)
	if !midShot {
		t.Log("no progress screenshot between 25 and 85 %")
	}

	// A failed deploy, for the table's error column.
	machines.SetConfig(fakeagent.Config{WriteDuration: 500 * time.Millisecond, WriteChunks: 2, WriteError: "Disk /dev/sda: I/O error writing sector 2048"})
	a.deploy("n3-rack4", image)
	a.waitState("n3-rack4", "deploy failed")
	waitJS("n3 failed in the page", `!!document.querySelector('tr[data-state="deploy failed"] .lasterr')`)
	shot("03-fleet", false)

	// Keyboard: the first Tab reaches the skip link; a state chip filters
	// with Enter.
	evalBool(`(document.activeElement && document.activeElement.blur(), true)`)
	step("tab", chromedp.KeyEvent(kb.Tab))
	if focused := evalString(`document.activeElement.textContent`); focused != "Skip to content" {
		t.Errorf("first Tab focused %q, want the skip link", focused)
	}
	step("filter by keyboard", chromedp.Focus(css(`#counts button[aria-label^="active"]`)), chromedp.KeyEvent(kb.Enter))
	waitJS("the active filter", `document.querySelectorAll('#fleet tbody tr').length === 1 && location.search === '?state=active'`)
	unlabelled := evalInt(`[...document.querySelectorAll('input,select,button')].filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).length`)
	overflow := evalInt(`document.documentElement.scrollWidth - window.innerWidth`)
	if unlabelled != 0 || overflow > 0 {
		t.Errorf("%d controls without a label; page %d px wider than the 1366 px window", unlabelled, overflow)
	}

	// The node page with its timing chart.
	step("open n1", chromedp.Click(css(fmt.Sprintf(`tr[data-uuid="%s"] td.name a`, n1))),
		chromedp.WaitVisible(css(`#timing-chart`)), chromedp.WaitVisible(css(`#timing-table`)))
	waitJS("the chart", `!!(window.Chart && Chart.getChart(document.getElementById('timing-chart')))`)
	waitJS("the history", `document.querySelectorAll('#history-table tbody tr').length >= 4`)
	if phases := evalInt(`Chart.getChart(document.getElementById('timing-chart')).data.datasets.filter(d => d.data.some(v => v > 0)).length`); phases < 3 {
		t.Errorf("the timing chart shows %d phases with a duration, want at least 3", phases)
	}
	// The agent's decode stage, its own timings beneath it, named for
	// what they measure.
	rows := evalString(`[...document.querySelectorAll('#timing-table tbody th')].map(th => th.textContent).join('\n')`)
	if !regexp.MustCompile(`(?s)↳ Agent: decode \(part of the write\)\n↳ Agent: decoder waiting for the download \(part of the write\)\n` +
		`↳ Agent: decoder waiting for the disks \(part of the write\)\n.*↳ Agent: verify`).MatchString(rows) {
		t.Errorf("the timing table's phases:\n%s\nwant the decode stage's waits, named, beneath its decode phase", rows)
	}
	history := evalString(`document.getElementById('history-table').innerText`)
	// Operator actions carry the API request's user.
	for _, want := range []string{"deploying → active", "available → deploying (target active) — operator"} {
		if !strings.Contains(history, want) {
			t.Errorf("history lacks %q:\n%s", want, history)
		}
	}
	if inv := evalString(`document.getElementById('inventory').innerText`); !strings.Contains(inv, "AMD EPYC") || !strings.Contains(inv, "/dev/nvme0n1") {
		t.Errorf("inventory: %q", inv)
	}
	ports := evalString(`document.getElementById('ports').innerText`)
	if !strings.Contains(ports, "52:54:00:aa:00:01") {
		t.Errorf("ports: %q", ports)
	}
	shot("04-node-timings", true)

	if e := errs.list(); len(e) > 0 {
		t.Errorf("the browser reported errors:\n%s", strings.Join(e, "\n"))
	}
	for _, p := range shots {
		t.Logf("screenshot: %s", p)
		fmt.Fprintln(os.Stderr, "dashboard screenshot:", p)
	}
}
