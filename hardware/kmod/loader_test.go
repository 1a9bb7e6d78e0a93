package kmod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeKernel stands in for finit_module: it records the modules loaded,
// refuses a load whose dependencies are not in yet, and fails the modules
// of fail with the given error.
type fakeKernel struct {
	ix   *Index
	fail map[string]error

	mu     sync.Mutex
	loaded []string
	params map[string]string
}

func (k *fakeKernel) init(path, params string) error {
	name := ModuleName(path)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fail[name]; err != nil {
		return err
	}
	for _, d := range k.ix.Deps(name) {
		if !slices.Contains(k.loaded, d) {
			return fmt.Errorf("%s: unknown symbol (dependency %s not loaded)", name, d)
		}
	}
	if slices.Contains(k.loaded, name) {
		return fs.ErrExist
	}
	k.loaded = append(k.loaded, name)
	if params != "" {
		if k.params == nil {
			k.params = map[string]string{}
		}
		k.params[name] = params
	}
	return nil
}

func (k *fakeKernel) Loaded() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.loaded)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestLoader(t *testing.T, opts LoaderOptions, fail map[string]error) (*Loader, *fakeKernel) {
	t.Helper()
	ix, err := LoadIndex(writeIndex(t, testIndex))
	if err != nil {
		t.Fatal(err)
	}
	if opts.Present == nil {
		opts.Present = []string{}
	}
	if opts.Logger == nil {
		opts.Logger = quietLog()
	}
	k := &fakeKernel{ix: ix, fail: fail}
	l := NewLoader(ix, opts)
	l.initModule = k.init
	return l, k
}

func TestLoaderDependencies(t *testing.T) {
	l, k := newTestLoader(t, LoaderOptions{Params: map[string]string{"virtio-net": "napi_tx=1"}}, nil)
	ctx := context.Background()
	if err := l.Load(ctx, "virtio_net"); err != nil {
		t.Fatal(err)
	}
	if err := l.Load(ctx, "virtio-net"); err != nil {
		t.Fatalf("second load: %v", err)
	}
	got := k.Loaded()
	if len(got) != 5 || got[len(got)-1] != "virtio_net" {
		t.Fatalf("kernel got %v, want the 4 dependencies then virtio_net", got)
	}
	if slices.Index(got, "failover") > slices.Index(got, "net_failover") {
		t.Errorf("failover loaded after net_failover: %v", got)
	}
	if !reflect.DeepEqual(l.Loaded(), got) {
		t.Errorf("Loaded() = %v, kernel has %v", l.Loaded(), got)
	}
	if k.params["virtio_net"] != "napi_tx=1" {
		t.Errorf("params = %v", k.params)
	}
	// Soft dependencies: crc32c_generic before e1000e, vfat after; ptp is
	// a hard dependency.
	if err := l.Load(ctx, "e1000e"); err != nil {
		t.Fatal(err)
	}
	got = k.Loaded()[5:]
	if !reflect.DeepEqual(got, []string{"crc32c_generic", "ptp", "e1000e", "vfat"}) {
		t.Errorf("e1000e loads = %v", got)
	}
}

func TestLoaderSkipsAndFailures(t *testing.T) {
	boom := errors.New("exec format error")
	l, k := newTestLoader(t, LoaderOptions{Blacklist: []string{"megaraid-sas"}, Present: []string{"virtio_ring"}},
		map[string]error{"scsi_mod": boom, "crc32c_generic": boom})
	k.loaded = []string{"virtio_ring"}
	ctx := context.Background()
	if err := l.Load(ctx, "nvme_core"); err != nil {
		t.Errorf("built-in module: %v", err)
	}
	if err := l.Load(ctx, "megaraid_sas"); !errors.Is(err, ErrBlacklisted) {
		t.Errorf("blacklisted module: err = %v", err)
	}
	if err := l.Load(ctx, "sd_mod"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "sd_mod needs scsi_mod") {
		t.Errorf("sd_mod with a failing dependency: err = %v", err)
	}
	if err := l.Load(ctx, "no_such_driver"); !errors.Is(err, ErrNoModule) {
		t.Errorf("unknown module: err = %v", err)
	}
	// A failed soft dependency does not stop the module.
	if err := l.Load(ctx, "e1000e"); err != nil {
		t.Errorf("e1000e with a failing soft dependency: %v", err)
	}
	if err := l.Load(ctx, "virtio_pci"); err != nil {
		t.Fatal(err)
	}
	if got := k.Loaded()[1:]; !reflect.DeepEqual(got, []string{"ptp", "e1000e", "vfat", "virtio", "virtio_pci"}) {
		t.Errorf("kernel got %v (virtio_ring was present, nvme_core built in)", got)
	}
	var failed []string
	for _, f := range l.Failed() {
		failed = append(failed, f.Module)
	}
	if !reflect.DeepEqual(failed, []string{"megaraid_sas", "crc32c_generic", "scsi_mod", "sd_mod", "no_such_driver"}) {
		t.Errorf("Failed() = %v", l.Failed())
	}
	// A module loaded behind the Loader's back (EEXIST) is not an error.
	l2, k2 := newTestLoader(t, LoaderOptions{}, nil)
	k2.loaded = []string{"ptp"}
	if err := l2.Load(ctx, "e1000e"); err != nil {
		t.Errorf("dependency already loaded: %v", err)
	}
	if slices.Contains(l2.Loaded(), "ptp") {
		t.Errorf("Loaded() = %v claims ptp", l2.Loaded())
	}
}

// TestLoaderSoftdepAliases: a soft dependency may name an alias (the
// crypto algorithm "crc32c"); one this kernel lacks (crct10dif, built in
// or not shipped) is skipped, not a failure.
func TestLoaderSoftdepAliases(t *testing.T) {
	l, k := newTestLoader(t, LoaderOptions{}, nil)
	if err := l.Load(context.Background(), "sd_mod"); err != nil {
		t.Fatal(err)
	}
	if got := k.Loaded(); !reflect.DeepEqual(got, []string{"crc32c_generic", "scsi_mod", "sd_mod"}) {
		t.Errorf("kernel got %v", got)
	}
	if f := l.Failed(); len(f) != 0 {
		t.Errorf("Failed() = %v", f)
	}
}

func TestLoaderCycle(t *testing.T) {
	files := map[string]string{
		"modules.dep":   "a.ko: b.ko\nb.ko: a.ko\n",
		"modules.alias": "",
	}
	ix, err := LoadIndex(writeIndex(t, files))
	if err != nil {
		t.Fatal(err)
	}
	l := NewLoader(ix, LoaderOptions{Present: []string{}, Logger: quietLog()})
	l.initModule = func(string, string) error { return nil }
	if err := l.Load(context.Background(), "a"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("err = %v, want a dependency cycle", err)
	}
}

func TestLoaderConcurrent(t *testing.T) {
	l, k := newTestLoader(t, LoaderOptions{}, nil)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range []string{"virtio_net", "virtio_pci", "sd_mod", "e1000e"} {
				if err := l.Load(context.Background(), m); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got := k.Loaded()
	slices.Sort(got)
	if len(slices.Compact(slices.Clone(got))) != len(got) || len(got) != 12 {
		t.Errorf("kernel got %v: want 12 modules, each once", got)
	}
}

func TestLoaderCancelled(t *testing.T) {
	l, k := newTestLoader(t, LoaderOptions{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Load(ctx, "virtio_net"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if len(k.Loaded()) != 0 || len(l.Failed()) != 0 {
		t.Errorf("cancelled load: kernel got %v, failures %v", k.Loaded(), l.Failed())
	}
}
