// Command rivet-rack runs a virtual rack (internal/virtualrack) until
// interrupted: N emulated servers (UEFI and BIOS in turn, e1000e NICs,
// NVMe or MegaRAID disks) with ipmi_sim BMCs and a Rivet conductor serving
// network boot, all in a private network namespace, with the conductor's
// API relayed to a loopback port of this host. It prints how to reach the
// API and the credentials, then waits for Ctrl-C and removes everything.
//
//	rivet-rack -n 3 [-listen 127.0.0.1:6385] [-dir /tmp/rivet-rack-X] [-keep]
//
// make rack N=3 builds what it needs and runs it (docs/rack.md).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/virtualrack"
)

func main() {
	ipmisim.RunHelper() // ipmi_sim runs this program as its chassis helper
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rivet-rack:", err)
		}
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	nodes                             int
	dir, listen                       string
	conductor, kernel, ramdisk, image string
	keep, verbose, automatedClean     bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("rivet-rack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.nodes, "n", 3, fmt.Sprintf("number of nodes, 1 to %d (odd ones UEFI with an NVMe disk, even ones BIOS with a MegaRAID disk)", virtualrack.MaxNodes))
	fs.StringVar(&o.dir, "dir", "", "directory for the rack's files (default: a new /tmp/rivet-rack-*, removed at exit unless -keep)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:6385", "loopback address on this host relayed to the conductor's API")
	fs.StringVar(&o.conductor, "conductor", "build/bin/rivet-conductor", "the rivet-conductor binary")
	fs.StringVar(&o.kernel, "deploy-kernel", "build/kernel-generic/vmlinuz", "deploy kernel (the hardware ramdisk's: Debian's generic kernel)")
	fs.StringVar(&o.ramdisk, "deploy-ramdisk", "build/initramfs.cpio.zst", "deploy ramdisk (the hardware flavour)")
	fs.StringVar(&o.image, "image-dir", "build/testimage", "directory the conductor serves under /images/ (empty: none)")
	fs.BoolVar(&o.automatedClean, "automated-clean", false, "run the conductor's automated cleaning (on provide and after undeploy; off by default in the rack: a minute per node under emulation)")
	fs.BoolVar(&o.keep, "keep", false, "keep the rack's directory (logs, consoles) at exit")
	fs.BoolVar(&o.verbose, "v", false, "also print the conductor's log")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.nodes < 1 || o.nodes > virtualrack.MaxNodes {
		return o, fmt.Errorf("-n %d: want 1 to %d", o.nodes, virtualrack.MaxNodes)
	}
	return o, nil
}

// nodeSpecs are the rack's nodes: UEFI with NVMe and BIOS with MegaRAID
// SAS in turn, all with e1000e NICs.
func nodeSpecs(n int) []virtualrack.NodeSpec {
	specs := make([]virtualrack.NodeSpec, n)
	for i := range specs {
		specs[i] = virtualrack.NodeSpec{Name: fmt.Sprintf("node%d", i+1), Firmware: virtualrack.UEFI, NICModel: "e1000e", DiskBus: qemu.DiskNVMe}
		if i%2 == 1 {
			specs[i].Firmware, specs[i].DiskBus = virtualrack.BIOS, qemu.DiskMegaSAS
		}
	}
	return specs
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("/tmp", "rivet-rack-"); err != nil {
			return err
		}
	}
	defer func() {
		if !o.keep {
			err = errors.Join(err, os.RemoveAll(dir))
		}
	}()
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	var paths [4]string
	for i, p := range []string{o.conductor, o.kernel, o.ramdisk, o.image} {
		if paths[i], err = abs(p); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := virtualrack.Config{Dir: dir, Conductor: paths[0], DeployKernel: paths[1], DeployRamdisk: paths[2],
		ImageDir: paths[3], Nodes: nodeSpecs(o.nodes), Logger: log, AutomatedClean: o.automatedClean}
	if o.verbose {
		cfg.ConductorOutput = stderr
	}
	fmt.Fprintf(stdout, "Starting a virtual rack of %d nodes in %s ...\n", o.nodes, dir)
	rack, err := virtualrack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "Stopping the rack ...")
		err = errors.Join(err, rack.Close())
	}()
	addr, err := rack.Forward(o.listen)
	if err != nil {
		return err
	}
	printGuide(stdout, rack, addr, paths[3], dir, o.keep)
	<-ctx.Done()
	return nil
}

// printGuide tells the operator how to reach the rack.
func printGuide(w io.Writer, rack *virtualrack.Rack, addr net.Addr, imageDir, dir string, keep bool) {
	url := "http://" + addr.String()
	fmt.Fprintf(w, "\nVirtual rack up: namespace %s, conductor API %s inside it, relayed to %s.\n\n", rack.Netns, rack.APIURL, url)
	fmt.Fprintf(w, "  export RIVET_URL=%s RIVET_USERNAME=%s RIVET_PASSWORD=%s\n", url, rack.Username, rack.Password)
	fmt.Fprintln(w, "  build/bin/rivet node list")
	fmt.Fprintf(w, "  dashboard: %s/dashboard/ (same user)\n", url)
	fmt.Fprintf(w, "  inside the namespace: ip netns exec %s build/bin/rivet --url %s node list\n", rack.Netns, rack.APIURL)
	fmt.Fprintf(w, "  export OS_AUTH_TYPE=http_basic OS_ENDPOINT=%s OS_USERNAME=%s OS_PASSWORD=%s\n", url, rack.Username, rack.Password)
	fmt.Fprintln(w, "  baremetal node list")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tFIRMWARE\tNIC\tMAC\tDISK\tBMC (ipmi, lanplus)\tBMC USER / PASSWORD\tCONSOLE")
	for _, n := range rack.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s / %s\t%s\n", n.Name, n.Firmware, n.NICModel, n.MAC, n.DiskBus,
			n.BMCAddress, n.BMC.Username(), n.BMC.Password(), n.ConsoleLog)
	}
	tw.Flush()
	if imageDir != "" {
		fmt.Fprintln(w, "\nDeploy the test images the conductor serves (the nodes fetch them inside the namespace):")
		if sum, err := fileSHA256(filepath.Join(imageDir, "disk.raw")); err == nil && rack.Node("node1") != nil {
			fmt.Fprintf(w, "  # node1 (UEFI): the whole-disk image\n")
			fmt.Fprintf(w, "  build/bin/rivet node deploy node1 --image %s --checksum %s --os-hash-algo sha256 --wait\n",
				rack.ImageURL("disk.raw"), sum)
		}
		if sum, err := fileSHA256(filepath.Join(imageDir, "partition.raw")); err == nil && rack.Node("node2") != nil {
			fmt.Fprintf(w, "  # node2 (BIOS): the partition image; the agent installs its GRUB\n")
			fmt.Fprintf(w, "  baremetal node set node2 --instance-info image_source=%s --instance-info image_os_hash_algo=sha256 \\\n"+
				"      --instance-info image_os_hash_value=%s --instance-info image_type=partition --instance-info root_gb=1\n"+
				"  baremetal node deploy node2 --wait\n", rack.ImageURL("partition.raw"), sum)
		}
		fmt.Fprintln(w, "  # each node's console log (above) shows its firmware, the deploy ramdisk and the deployed OS")
	}
	fmt.Fprintf(w, "\nConductor log: %s\n", rack.ConductorLog())
	if keep {
		fmt.Fprintf(w, "Ctrl-C stops the rack; %s stays.\n", dir)
	} else {
		fmt.Fprintf(w, "Ctrl-C stops the rack and removes %s.\n", dir)
	}
}

// fileSHA256 is the hex SHA-256 of a file.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
