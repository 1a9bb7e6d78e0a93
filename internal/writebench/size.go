package writebench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSizeMiB reads an image size such as "1G", "2.5G", "1024M" or
// "1024" (MiB; the suffixes are binary, as in dd) and returns it in whole
// MiB, at least 64.
func ParseSizeMiB(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "G"):
		mult, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("image size %q: want e.g. 1G, 2.5G or 1024M", s)
	}
	mib := int64(v * mult)
	if mib < 64 {
		return 0, fmt.Errorf("image size %q: at least 64M", s)
	}
	return mib, nil
}
