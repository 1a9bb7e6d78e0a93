// Package agent is rivet-agent, a drop-in for the Ironic Python Agent: it
// finds its node through lookup, serves IPA's command API (extensions
// standby, deploy, …; sync and async commands; results kept for the agent's
// lifetime), heartbeats to the conductor, and carries out the commands with
// the hardware and imagewriter packages.
//
// Run wires it together; cmd/rivet-agent only builds the Config from the
// kernel command line and flags.
package agent
