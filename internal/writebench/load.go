package writebench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of /proc/stat's counters on Linux (USER_HZ).
const userHZ = 100

// CPUTimes is the machine's CPU time since boot, from /proc/stat's "cpu"
// line, in seconds summed over the cores.
type CPUTimes struct {
	// Busy is everything but idle and iowait.
	Busy float64
	// Steal is the time the hypervisor ran something else while a
	// virtual core wanted to run (part of Busy): other guests on the host.
	Steal float64
	// Total is every column (guest time is already in user).
	Total float64
}

// ParseProcStat reads the "cpu" line of a /proc/stat.
func ParseProcStat(r io.Reader) (CPUTimes, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var t CPUTimes
		// user nice system idle iowait irq softirq steal [guest guest_nice]
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: cpu column %d: %w", i+1, err)
			}
			s := float64(n) / userHZ
			t.Total += s
			if i != 3 && i != 4 {
				t.Busy += s
			}
			if i == 7 {
				t.Steal = s
			}
		}
		return t, nil
	}
	if err := sc.Err(); err != nil {
		return CPUTimes{}, fmt.Errorf("/proc/stat: %w", err)
	}
	return CPUTimes{}, fmt.Errorf("/proc/stat: no cpu line")
}

// ReadCPUTimes reads /proc/stat.
func ReadCPUTimes() (CPUTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	defer f.Close()
	return ParseProcStat(f)
}

// LoadAvg is /proc/loadavg's first three fields.
type LoadAvg [3]float64

// String renders "6.90 7.01 6.06".
func (l LoadAvg) String() string { return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2]) }

// ParseLoadAvg reads /proc/loadavg's text.
func ParseLoadAvg(s string) (LoadAvg, error) {
	var l LoadAvg
	f := strings.Fields(s)
	if len(f) < 3 {
		return l, fmt.Errorf("/proc/loadavg: %q", s)
	}
	for i := range l {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return l, fmt.Errorf("/proc/loadavg: %w", err)
		}
		l[i] = v
	}
	return l, nil
}

// ReadLoadAvg reads /proc/loadavg.
func ReadLoadAvg() (LoadAvg, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return LoadAvg{}, err
	}
	return ParseLoadAvg(string(b))
}
