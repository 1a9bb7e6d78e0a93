package kmod

import (
	"reflect"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	o := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0 ipa-api-url=http://10.0.2.100:80 mlx4-core.log_num_mgm_entry_size=-1 ` +
		`megaraid_sas.msix_disable=1 megaraid_sas.max_sectors=64 e1000e.InterruptThrottleRate="3000 3000" ` +
		`modprobe.blacklist=nouveau,bnx2x module_blacklist=igb nvme.poll_queues quiet` + "\n")
	want := map[string]string{
		"mlx4_core":    "log_num_mgm_entry_size=-1",
		"megaraid_sas": "msix_disable=1 max_sectors=64",
		"e1000e":       `InterruptThrottleRate="3000 3000"`,
		"nvme":         "poll_queues",
	}
	if !reflect.DeepEqual(o.Params, want) {
		t.Errorf("Params = %#v, want %#v", o.Params, want)
	}
	if !reflect.DeepEqual(o.Blacklist, []string{"nouveau", "bnx2x", "igb"}) {
		t.Errorf("Blacklist = %v", o.Blacklist)
	}
	if o := ParseCmdline(""); len(o.Params) != 0 || o.Blacklist != nil {
		t.Errorf("empty command line: %+v", o)
	}
}
