//go:build linux

// Command powerloss is the uinit of the SQLite store's power-loss test
// (../../powerloss_test.go). It mounts the VM's disk (ext4, made by the
// test) and writes to a database on it, one write at a time, printing
// the number of each write once it is reported done, until the VM is
// killed. The kernel command line's rivet.powerloss= says how:
//
//	store    through the store: one node's extra.n set to 1, 2, 3 …
//	control  through SQLite alone (WAL, synchronous=NORMAL, no sync of
//	         its own): rows 1, 2, 3 … inserted into table t
//
// (one ramdisk serves both runs).
//
// The control shows that killing the VM loses what was not synced: the
// store fsyncs each commit (synchronous=FULL), SQLite alone with
// synchronous=NORMAL does not.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/internal/kernelcmdline"
)

func main() {
	mode, err := cmdlineMode()
	if err == nil {
		err = run(mode)
	}
	if err != nil {
		fmt.Println("RIVET-POWERLOSS error:", err)
	}
	select {} // the test kills the VM
}

// cmdlineMode is the value of rivet.powerloss= on the kernel command line.
func cmdlineMode() (string, error) {
	params, err := kernelcmdline.Read()
	if err != nil {
		return "", err
	}
	mode, ok := params["rivet.powerloss"]
	if !ok {
		return "", fmt.Errorf("no rivet.powerloss= on the kernel command line")
	}
	return mode, nil
}

func run(mode string) error {
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat("/dev/vda"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no /dev/vda")
		}
	}
	if err := os.MkdirAll("/mnt", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/dev/vda", "/mnt", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount /dev/vda: %w", err)
	}
	ctx := context.Background()
	switch mode {
	case "store":
		s, err := sqlite.Open(ctx, "/mnt/rivet.db")
		if err != nil {
			return err
		}
		n := &store.Node{Name: "powerloss", Driver: "fake-hardware"}
		if err := s.CreateNode(ctx, n); err != nil {
			return err
		}
		fmt.Println("RIVET-POWERLOSS writing")
		for i := 1; ; i++ {
			err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
				tx.Node().Extra = map[string]any{"n": i}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Printf("RIVET-POWERLOSS acked=%d\n", i)
		}
	case "control":
		db, err := sql.Open("sqlite", "file:/mnt/control.db?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(1)
		if _, err := db.ExecContext(ctx, `CREATE TABLE t (n INTEGER)`); err != nil {
			return err
		}
		fmt.Println("RIVET-POWERLOSS writing")
		for i := 1; ; i++ {
			if _, err := db.ExecContext(ctx, `INSERT INTO t (n) VALUES (?)`, i); err != nil {
				return err
			}
			fmt.Printf("RIVET-POWERLOSS acked=%d\n", i)
		}
	}
	return fmt.Errorf("unknown mode %q", mode)
}
