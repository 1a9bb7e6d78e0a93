// Command gen writes the provision state machine as a Graphviz diagram
// (statemachine.Dot) to the file named by its argument.
package main

import (
	"fmt"
	"os"

	"github.com/rivetmetal/rivet/conductor/statemachine"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen OUTPUT.dot")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], []byte(statemachine.Dot()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
