// Package wire holds the JSON shapes that cross the wire between a deploy
// ramdisk agent and its control plane, exactly as the Ironic Python Agent and
// Ironic speak them: the agent's own command API (commands, results, errors,
// status), the ramdisk endpoints of the Ironic API (lookup and heartbeat), and
// the parameters of the deploy commands (image_info, steps).
//
// Both rivet-agent and rivet-conductor import this package, so each shape is
// written once. It imports only the standard library.
package wire
