package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Microversion is an Ironic API microversion "X.Y".
type Microversion struct{ Major, Minor int }

// ParseMicroversion parses "1.62".
func ParseMicroversion(s string) (Microversion, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ".")
	if !ok {
		return Microversion{}, fmt.Errorf("invalid API version %q", s)
	}
	maj, err1 := strconv.Atoi(a)
	mnr, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || maj < 0 || mnr < 0 {
		return Microversion{}, fmt.Errorf("invalid API version %q", s)
	}
	return Microversion{maj, mnr}, nil
}

// String renders "X.Y".
func (v Microversion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less reports whether v is older than o.
func (v Microversion) Less(o Microversion) bool {
	return v.Major < o.Major || (v.Major == o.Major && v.Minor < o.Minor)
}

// NegotiateVersion returns min(serverMax, want) as a string: the version a
// client should declare. An unparsable serverMax yields want.
func NegotiateVersion(serverMax, want string) string {
	m, err := ParseMicroversion(serverMax)
	if err != nil {
		return want
	}
	w, err := ParseMicroversion(want)
	if err != nil {
		return serverMax
	}
	if m.Less(w) {
		return m.String()
	}
	return w.String()
}
