package provision

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/wire"
)

// vmDriver is a fake driver that boots the ramdisk itself and sees the
// conductor through a translation, like the qemu driver.
type vmDriver struct {
	*fake.Driver
	mu       sync.Mutex
	prepared []power.Ramdisk
}

func (d *vmDriver) Name() string { return "vm" }

func (d *vmDriver) PrepareRamdisk(ctx context.Context, node power.Node, rd power.Ramdisk) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prepared = append(d.prepared, rd)
	return nil
}

func (d *vmDriver) NodeURL(node power.Node, hostURL string) (string, error) {
	return strings.Replace(hostURL, "127.0.0.1", "10.0.2.100", 1), nil
}

// noAgent fails every agent call.
type noAgent struct{}

func (noAgent) Execute(context.Context, agentclient.Endpoint, string, any, bool) (*wire.CommandResult, error) {
	return nil, errors.New("no agent")
}

func (noAgent) Commands(context.Context, agentclient.Endpoint) (*wire.CommandList, error) {
	return nil, errors.New("no agent")
}

func (noAgent) Wait(context.Context, agentclient.Endpoint, string, time.Duration, int) (*wire.CommandResult, error) {
	return nil, errors.New("no agent")
}

// newTestEngine is a started engine on a fresh SQLite store, with an agent
// that never answers.
func newTestEngine(t *testing.T, drv power.Driver, cfg Config) (*Engine, store.Store) {
	t.Helper()
	return openEngine(t, filepath.Join(t.TempDir(), "rivet.db"), drv, noAgent{}, cfg)
}

// openEngine starts an engine on the SQLite store at path, with short
// intervals unless cfg sets them; both are closed when the test ends.
func openEngine(t *testing.T, path string, drv power.Driver, agent Agent, cfg Config) (*Engine, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = discardLogger()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.PowerStateInterval == 0 {
		cfg.PowerStateInterval = 5 * time.Millisecond
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 20 * time.Millisecond
	}
	e, err := New(st, []power.Driver{drv}, agent, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		st.Close()
	})
	return e, st
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func waitState(t *testing.T, st store.Store, uuid string, want statemachine.State) *store.Node {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := st.GetNode(context.Background(), uuid)
		if err != nil {
			t.Fatal(err)
		}
		if n.ProvisionState == want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node in %q (last_error %q), want %q", n.ProvisionState, n.LastError, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeployBootsRamdiskThroughDriver(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	drv := &vmDriver{Driver: fk}
	e, st := newTestEngine(t, drv, Config{APIURL: "http://127.0.0.1:6385",
		DeployKernel: "/srv/vmlinuz", DeployRamdisk: "/srv/initramfs", CallbackTimeout: 200 * time.Millisecond,
		DisableAutomatedClean: true})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "vm", InstanceInfo: map[string]any{
		"image_source": "http://127.0.0.1:6385/images/disk.raw", "image_checksum": strings.Repeat("a", 64)}}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "manage"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.Manageable)
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "provide"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.Available)

	// No ports: refused before any transition.
	err := e.Provisioning().Provision(ctx, "n1", Request{Target: "active"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "has no ports") {
		t.Fatalf("deploy without ports: %v", err)
	}
	for _, mac := range []string{"52:54:00:00:00:02", "52:54:00:00:00:01"} {
		p := &store.Port{NodeID: n.ID, Address: mac, PXEEnabled: mac == "52:54:00:00:00:01"}
		if err := st.CreatePort(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "active"}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, st, n.UUID, statemachine.DeployWait)
	if got.DeployStep["step"] != "deploy" || got.PowerState != string(power.On) || got.TargetProvisionState != statemachine.Active {
		t.Fatalf("after boot: step %v power %q target %q", got.DeployStep["step"], got.PowerState, got.TargetProvisionState)
	}
	if dev, persistent := fk.BootDevice(n.UUID); dev != power.BootPXE || persistent {
		t.Fatalf("boot device %q persistent=%v, want pxe once", dev, persistent)
	}
	drv.mu.Lock()
	prepared := drv.prepared
	drv.mu.Unlock()
	if len(prepared) != 1 {
		t.Fatalf("PrepareRamdisk called %d times", len(prepared))
	}
	rd := prepared[0]
	if rd.Kernel != "/srv/vmlinuz" || rd.Initramfs != "/srv/initramfs" || len(rd.Params) != 3 ||
		rd.Params[0] != "ipa-api-url=http://10.0.2.100:6385" || rd.Params[1] != "BOOTIF=52:54:00:00:00:01" ||
		!isRequestIDParam(rd.Params[2]) {
		t.Fatalf("ramdisk = %+v", rd)
	}

	// No agent ever calls back: the callback timeout fails the deploy and
	// powers the node off.
	got = waitState(t, st, n.UUID, statemachine.DeployFailed)
	if got.LastError != "Timeout reached while waiting for callback for node "+n.UUID {
		t.Fatalf("last_error = %q", got.LastError)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s, _ := fk.PowerState(ctx, power.Node{UUID: n.UUID}); s == power.Off {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node not powered off after the timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Actions that make no sense in the current state are refused.
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "provide"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("provide from deploy failed: %v", err)
	}
}

func isRequestIDParam(p string) bool {
	return strings.HasPrefix(p, "ipa-global-request-id=req-") && len(p) == len("ipa-global-request-id=req-")+36
}

func TestRecoverResumesInterruptedWork(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	path := filepath.Join(t.TempDir(), "rivet.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A node a previous run left in verifying.
	n := &store.Node{Name: "n1", Driver: fake.Name}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := st.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		_, err := tx.Node().Advance(statemachine.EvManage, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	_, st2 := openEngine(t, path, fk, noAgent{}, Config{})
	waitState(t, st2, n.UUID, statemachine.Manageable)
}

// TestAutomatedCleaningIsOnByDefault: with the zero Config, provide cleans
// the node through the ramdisk (as Ironic's [conductor]automated_clean);
// DisableAutomatedClean sends it straight to available.
func TestAutomatedCleaningIsOnByDefault(t *testing.T) {
	for _, disable := range []bool{false, true} {
		fk, _ := fake.New(fake.Config{})
		e, st := newTestEngine(t, &vmDriver{Driver: fk}, Config{APIURL: "http://127.0.0.1:6385",
			DeployKernel: "/srv/vmlinuz", DeployRamdisk: "/srv/initramfs", DisableAutomatedClean: disable})
		ctx := context.Background()
		n := &store.Node{Name: "n1", Driver: "vm"}
		if err := st.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := st.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"}); err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			verb string
			want statemachine.State
		}{{"manage", statemachine.Manageable}, {"provide", statemachine.CleanWait}} {
			if step.want == statemachine.CleanWait && disable {
				step.want = statemachine.Available
			}
			if err := e.Provisioning().Provision(ctx, "n1", Request{Target: step.verb}); err != nil {
				t.Fatal(err)
			}
			waitState(t, st, n.UUID, step.want)
		}
		if on, _ := fk.PowerState(ctx, power.Node{UUID: n.UUID}); (on == power.On) == disable {
			t.Errorf("disable=%v: power %s after provide", disable, on)
		}
	}
}
