package redfish

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

func TestVirtualMedia(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	n := biosNode(t, b)
	ctx := context.Background()
	const iso, iso2, img = "https://images.example/boot.iso", "https://images.example/other.iso", "https://images.example/data.img"

	l, err := d.VirtualMedia(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	// In @odata.id order.
	want := []power.VirtualMedia{{MediaTypes: []string{"CD", "DVD"}}, {MediaTypes: []string{"CD", "DVD"}},
		{MediaTypes: []string{"Floppy", "USBStick"}}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("VirtualMedia = %+v, want %+v", l, want)
	}

	check := func(what string, want map[string]string) {
		t.Helper()
		if got := b.images(); !maps.Equal(got, want) {
			t.Fatalf("%s: images = %v, want %v", what, got, want)
		}
	}
	if err := d.InsertMedia(ctx, n, "cdrom", iso); err != nil {
		t.Fatal(err)
	}
	check("cdrom inserted", map[string]string{"Floppy1": "", "CD1": iso, "CD2": ""})
	b.mu.Lock()
	wp := b.media["CD1"].writeProtected
	b.mu.Unlock()
	if !wp {
		t.Error("image inserted writable")
	}
	// The same image again: a no-op, not a second device.
	if err := d.InsertMedia(ctx, n, "cdrom", iso); err != nil {
		t.Fatal(err)
	}
	check("cdrom inserted again", map[string]string{"Floppy1": "", "CD1": iso, "CD2": ""})
	if err := d.InsertMedia(ctx, n, "dvd", iso2); err != nil {
		t.Fatal(err)
	}
	check("dvd inserted", map[string]string{"Floppy1": "", "CD1": iso, "CD2": iso2})
	err = d.InsertMedia(ctx, n, "cdrom", "https://images.example/third.iso")
	if !errors.Is(err, power.ErrUnsupported) || !strings.Contains(err.Error(), "no free virtual media device") {
		t.Errorf("all CD devices busy: err = %v", err)
	}
	if err := d.InsertMedia(ctx, n, "usb", img); err != nil {
		t.Fatal(err)
	}
	l, err = d.VirtualMedia(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if !l[2].Inserted || l[2].Image != img || !l[0].Inserted || l[0].Image != iso {
		t.Errorf("VirtualMedia after inserts = %+v", l)
	}

	if err := d.EjectMedia(ctx, n, []string{"cdrom"}); err != nil {
		t.Fatal(err)
	}
	check("cdrom ejected", map[string]string{"Floppy1": img, "CD1": "", "CD2": ""})
	if err := d.EjectMedia(ctx, n, nil); err != nil {
		t.Fatal(err)
	}
	check("all ejected", map[string]string{"Floppy1": "", "CD1": "", "CD2": ""})
	// Nothing inserted: nothing to do.
	if err := d.EjectMedia(ctx, n, []string{"usb"}); err != nil {
		t.Fatal(err)
	}
}

func TestVirtualMediaErrors(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	n := biosNode(t, b)
	ctx := context.Background()
	if err := d.InsertMedia(ctx, n, "tape", "https://x/y"); !errors.Is(err, power.ErrUnsupported) {
		t.Errorf("unknown device type: err = %v", err)
	}
	if err := d.EjectMedia(ctx, n, []string{"tape"}); !errors.Is(err, power.ErrUnsupported) {
		t.Errorf("unknown device type: err = %v", err)
	}
	b.set(func(b *fakeBMC) { b.fail[managerPath+"/VirtualMedia"] = true })
	if _, err := d.VirtualMedia(ctx, n); err == nil || !strings.Contains(err.Error(), "node n1") {
		t.Errorf("collection answering 500: err = %v", err)
	}
	if err := d.InsertMedia(ctx, n, "cdrom", "https://x/y"); err == nil {
		t.Error("collection answering 500: insert succeeded")
	}
	b.set(func(b *fakeBMC) {
		b.fail = map[string]bool{managerPath + "/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia": true}
	})
	if err := d.InsertMedia(ctx, n, "cdrom", "https://x/y"); err == nil || !strings.Contains(err.Error(), "CD1") {
		t.Errorf("InsertMedia answering 500: err = %v", err)
	}
	b.set(func(b *fakeBMC) {
		b.fail = map[string]bool{managerPath + "/VirtualMedia/Floppy1/Actions/VirtualMedia.EjectMedia": true}
		b.media["Floppy1"].image = "https://x/floppy.img"
	})
	if err := d.EjectMedia(ctx, n, nil); err == nil || !strings.Contains(err.Error(), "Floppy1") {
		t.Errorf("EjectMedia answering 500: err = %v", err)
	}
}
