package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/agent/logcollect"
	"github.com/rivetmetal/rivet/wire"
)

// logExt is IPA's log extension: collect_system_logs.
type logExt struct{ a *Agent }

func (logExt) Name() string { return "log" }

func (l logExt) Commands() []Command {
	return []Command{{Name: "collect_system_logs", Mode: Sync, Prepare: noParams(func(ctx context.Context, _ *Job) (any, error) {
		l.a.mu.Lock()
		r := l.a.runner
		l.a.mu.Unlock()
		s, err := logcollect.Archive(l.a.logSources(r), time.Now())
		if err != nil {
			return nil, err
		}
		return wire.SystemLogs{SystemLogs: s}, nil
	})}}
}

// secretParam matches kernel parameters that carry secrets.
var secretParam = regexp.MustCompile(`(ipa-agent-token|agent_token|password)=\S+`)

// logSources are the files of the log archive: the agent's log, the kernel
// log, the kernel command line (secrets masked), mounts, block devices,
// network state, UEFI boot entries and the command history.
func (a *Agent) logSources(r *runner) []logcollect.Source {
	file := func(rel string) func() ([]byte, error) {
		return func() ([]byte, error) { return os.ReadFile(filepath.Join(a.cfg.SysRoot, rel)) }
	}
	jsonOf := func(f func() (any, error)) func() ([]byte, error) {
		return func() ([]byte, error) {
			v, err := f()
			if err != nil {
				return nil, err
			}
			return json.MarshalIndent(v, "", "  ")
		}
	}
	src := []logcollect.Source{
		{Name: "rivet-agent.log", Read: func() ([]byte, error) {
			if a.logs == nil {
				return nil, fmt.Errorf("the agent's log is not kept in memory (no LogBuffer)")
			}
			return a.logs.Bytes(), nil
		}},
		{Name: "dmesg", Read: kernelLog},
		{Name: "cmdline", Read: func() ([]byte, error) {
			b, err := file("proc/cmdline")()
			return secretParam.ReplaceAll(b, []byte("$1="+wire.Masked)), err
		}},
		{Name: "mountinfo", Read: file("proc/self/mountinfo")},
		{Name: "block-devices.json", Read: jsonOf(func() (any, error) { return a.diskLister().List() })},
		{Name: "network.txt", Read: networkState},
		{Name: "route", Read: file("proc/net/route")},
		{Name: "uefi-boot-entries.txt", Read: func() ([]byte, error) {
			s := a.efiStore()
			if !s.Available() {
				return []byte("no UEFI variables: not booted through UEFI, or efivarfs not mounted\n"), nil
			}
			es, err := s.BootEntries()
			order, _ := s.BootOrder()
			var b strings.Builder
			fmt.Fprintf(&b, "BootOrder: %04X\n", order)
			for _, e := range es {
				fmt.Fprintf(&b, "%s %s\t%s\n", e.Name(), e.Description, e.FilePath)
			}
			return []byte(b.String()), err
		}},
	}
	if r != nil {
		src = append(src, logcollect.Source{Name: "commands.json", Read: jsonOf(func() (any, error) { return r.list(), nil })})
	}
	return src
}

// networkState lists the interfaces with their flags and addresses.
func networkState() ([]byte, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, it := range ifs {
		fmt.Fprintf(&b, "%d: %s mtu %d %s <%s>\n", it.Index, it.Name, it.MTU, it.HardwareAddr, it.Flags)
		addrs, _ := it.Addrs()
		for _, ad := range addrs {
			fmt.Fprintf(&b, "    %s\n", ad)
		}
	}
	return []byte(b.String()), nil
}
