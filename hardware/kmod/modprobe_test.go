package kmod

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestModprobe(t *testing.T) {
	dir := writeIndex(t, testIndex)
	ix, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{ix: ix}
	saved := defaultInitModule
	defaultInitModule = k.init
	t.Cleanup(func() { defaultInitModule = saved })

	cmdline := "console=ttyS0 vfat.utf8=1 modprobe.blacklist=megaraid_sas"
	cfg := Config{ModulesDir: dir, Cmdline: &cmdline, Logger: quietLog()}
	ctx := context.Background()
	// The kernel asks for an alias; options come from the command line
	// and the caller.
	loaded, err := Modprobe(ctx, cfg, []string{"fs-vfat"}, "shortname=mixed")
	if err != nil || !reflect.DeepEqual(loaded, []string{"vfat"}) {
		t.Errorf("Modprobe(fs-vfat) = %v, %v", loaded, err)
	}
	if k.params["vfat"] != "utf8=1 shortname=mixed" {
		t.Errorf("vfat params %q", k.params["vfat"])
	}
	// Several names; one unknown, one blacklisted: the rest still load.
	loaded, err = Modprobe(ctx, cfg, []string{"virtio-net", "no-such", "megaraid_sas"}, "")
	if !errors.Is(err, ErrNoModule) || !errors.Is(err, ErrBlacklisted) {
		t.Errorf("err = %v, want ErrNoModule and ErrBlacklisted", err)
	}
	if len(loaded) != 5 || loaded[4] != "virtio_net" {
		t.Errorf("loaded %v, want virtio_net after its 4 dependencies", loaded)
	}
	if _, err := Modprobe(ctx, Config{ModulesDir: t.TempDir(), Cmdline: &cmdline}, []string{"x"}, ""); err == nil {
		t.Error("no index: no error")
	}
}
