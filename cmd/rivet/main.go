// Command rivet is the operator CLI of the Rivet conductor: enroll nodes
// and ports, move nodes through their provision states (deploy, rebuild,
// clean, inspect, abort), control power, boot device and maintenance, and
// watch an image write's progress. Exit statuses (cli.ExitCode) are
// listed in the usage text.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rivet:", err)
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
