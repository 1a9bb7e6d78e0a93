package qemu

import (
	"errors"
	"testing"
)

func TestNodeURL(t *testing.T) {
	d := newTestDriver(t, Config{})
	n := testNode(t, "aa2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	for in, want := range map[string]string{
		"http://127.0.0.1:6385":                     "http://10.0.2.100:6385",
		"http://localhost:8080/images/disk.raw?x=1": "http://10.0.2.100:8080/images/disk.raw?x=1",
		"https://[::1]:8443/v1":                     "https://10.0.2.100:8443/v1",
		"http://127.0.0.1/agent_images/abc":         "http://10.0.2.100:80/agent_images/abc",
		"https://user:pw@localhost/x#frag":          "https://user:pw@10.0.2.100:443/x#frag",
	} {
		got, err := d.NodeURL(n, in)
		if err != nil || got != want {
			t.Errorf("NodeURL(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"http://192.0.2.1:6385", "http://conductor.example:6385", "http://10.0.2.2:80"} {
		if got, err := d.NodeURL(n, in); !errors.Is(err, ErrUnreachable) || got != in {
			t.Errorf("NodeURL(%s) = %q, %v; want it unchanged and ErrUnreachable", in, got, err)
		}
	}
	if _, err := d.NodeURL(n, "ftp://127.0.0.1/x"); err == nil {
		t.Error("ftp URL without a port accepted")
	}
	st, err := loadState(d.pathsFor(n.UUID, settings{}))
	if err != nil {
		t.Fatal(err)
	}
	want := []forward{{6385, "127.0.0.1"}, {8080, "127.0.0.1"}, {8443, "::1"}, {80, "127.0.0.1"}, {443, "127.0.0.1"}}
	got := map[forward]bool{}
	for _, f := range st.Forwards {
		if got[f] {
			t.Errorf("forward %v recorded twice", f)
		}
		got[f] = true
	}
	if len(got) != len(want) {
		t.Errorf("forwards = %v, want %v", st.Forwards, want)
	}
	for _, f := range want {
		if !got[f] {
			t.Errorf("forward %v not recorded (have %v)", f, st.Forwards)
		}
	}
	// The same URL again records nothing new.
	if _, err := d.NodeURL(n, "http://127.0.0.1:6385/v1/lookup"); err != nil {
		t.Fatal(err)
	}
	if st2, _ := loadState(d.pathsFor(n.UUID, settings{})); len(st2.Forwards) != len(st.Forwards) {
		t.Errorf("forwards grew to %v", st2.Forwards)
	}
}
