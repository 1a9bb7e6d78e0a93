package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper program instead of
// running tests (the helper-process pattern):
//
//	relay      RunRelay(os.Args[1], os.Args[2]) on stdin/stdout: the
//	           guestfwd relay of the VM tests (QEMU passes its environment on)
//	fake-qemu  a stand-in for qemu-system-x86_64 in the process tests: it
//	           serves the QMP greeting, appends to the console chardev file,
//	           writes its arguments to argv.txt in its working directory and
//	           runs until signalled; fakeEnv changes its behaviour
const helperEnv = "RIVET_QEMU_TEST_HELPER"

// fakeEnv: "fail" exits 1 at once with a QEMU-like error; "ignore-term"
// ignores SIGTERM; "poweroff" exits 0 after 300ms, as QEMU does when the
// guest powers off.
const fakeEnv = "RIVET_QEMU_TEST_FAKE"

// guestRamdiskDir holds the VM tests' ramdisk; TestMain removes it.
var guestRamdiskDir string

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "relay":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "relay helper: want HOST PORT")
			os.Exit(2)
		}
		if err := RunRelay(context.Background(), os.Args[1], os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "fake-qemu":
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	code := m.Run()
	if guestRamdiskDir != "" {
		os.RemoveAll(guestRamdiskDir)
	}
	os.Exit(code)
}

func fakeQEMU(args []string) int {
	_ = os.WriteFile("argv.txt", []byte(strings.Join(args, "\n")), 0o644)
	mode := os.Getenv(fakeEnv)
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -netdev user: could not set up host forwarding rule 'tcp:127.0.0.1:1-:9999'")
		return 1
	}
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-chardev" {
			continue
		}
		opts := map[string]string{}
		for _, kv := range strings.Split(args[i+1], ",") {
			k, v, _ := strings.Cut(kv, "=")
			opts[k] = v
		}
		switch {
		case strings.HasPrefix(args[i+1], "socket,"):
			l, err := net.Listen("unix", opts["path"])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Fprintln(c, `{"QMP": {"version": {}, "capabilities": []}}`)
					c.Close()
				}
			}()
		case strings.HasPrefix(args[i+1], "file,"):
			f, err := os.OpenFile(opts["path"], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err == nil {
				fmt.Fprintln(f, "fake guest booted")
				f.Close()
			}
		}
	}
	if mode == "poweroff" {
		time.Sleep(300 * time.Millisecond)
		return 0
	}
	for {
		time.Sleep(time.Hour)
	}
}
