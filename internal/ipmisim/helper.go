package ipmisim

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// The first argument that makes an executable act as ipmi_sim's helper.
const (
	helperChassis = "__rivet-ipmisim-chassis-control"
	helperLAN     = "__rivet-ipmisim-lan-config"
)

// RunHelper makes this executable act as ipmi_sim's chassis control or
// LAN configuration program when ipmi_sim runs it as such (its first
// argument says so): it does the work and exits. Otherwise it returns at
// once. Call it first thing in main or TestMain of any program that
// starts a BMC with the default Config.Helper.
func RunHelper() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case helperChassis:
		os.Exit(runChassisHelper(os.Args[2:], os.Stdout))
	case helperLAN:
		os.Exit(runLANHelper(os.Args[2:], os.Stdout))
	}
}

// runChassisHelper forwards "SOCKET get|set ARGS..." to the fixture and
// prints its answer; ipmi_sim reads the output and the exit status.
func runChassisHelper(args []string, stdout io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stdout, "usage: chassis-control SOCKET get|set ARGS...")
		return 2
	}
	conn, err := net.DialTimeout("unix", args[0], 5*time.Second)
	if err != nil {
		fmt.Fprintln(stdout, "BMC fixture unreachable:", err)
		return 1
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := json.NewEncoder(conn).Encode(request{Args: args[1:]}); err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	var resp response
	if err := json.NewDecoder(io.LimitReader(conn, 64<<10)).Decode(&resp); err != nil {
		fmt.Fprintln(stdout, "BMC fixture answer:", err)
		return 1
	}
	fmt.Fprint(stdout, resp.Output)
	if !resp.OK {
		return 1
	}
	return 0
}

// runLANHelper answers ipmi_sim's LAN configuration queries from its
// arguments: "IP NETMASK GATEWAY MAC get PARM...". Sets are accepted and
// ignored (the simulated LAN settings are fixed).
func runLANHelper(args []string, stdout io.Writer) int {
	if len(args) < 5 {
		fmt.Fprintln(stdout, "usage: lan-config IP NETMASK GATEWAY MAC get|set|check ARGS...")
		return 2
	}
	ip, mask, gw, mac := args[0], args[1], args[2], args[3]
	op, parms := args[4], args[5:]
	switch op {
	case "set", "check":
		return 0
	case "get":
	default:
		fmt.Fprintln(stdout, "unknown operation", op)
		return 1
	}
	var b strings.Builder
	for _, p := range parms {
		var v string
		switch p {
		case "ip_addr":
			v = ip
		case "ip_addr_src":
			v = "static"
		case "mac_addr":
			v = mac
		case "subnet_mask":
			v = mask
		case "default_gw_ip_addr":
			v = gw
		case "backup_gw_ip_addr":
			v = "0.0.0.0"
		case "default_gw_mac_addr", "backup_gw_mac_addr":
			v = "00:00:00:00:00:00"
		default:
			fmt.Fprintln(stdout, "invalid parameter", p)
			return 1
		}
		fmt.Fprintf(&b, "%s:%s\n", p, v)
	}
	fmt.Fprint(stdout, b.String())
	return 0
}
