package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/wire"
)

// version is an API microversion.
type version struct{ major, minor int }

// String formats the version as "1.82".
func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// The range served: 1.1 to 1.82 (Ironic 21.4, 2023.1).
var (
	minVersion = version{1, 1}
	maxVersion = version{1, ironicjson.MaxMinor}
)

// parseVersion reads the requested version: absent means the minimum,
// "latest" the maximum (Ironic's Version.parse_headers).
func parseVersion(h http.Header) (version, error) {
	s := strings.TrimSpace(h.Get(wire.APIVersionHeader))
	switch {
	case s == "":
		return minVersion, nil
	case strings.EqualFold(s, "latest"):
		return maxVersion, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) == 2 {
		major, err1 := strconv.Atoi(parts[0])
		minor, err2 := strconv.Atoi(parts[1])
		if err1 == nil && err2 == nil {
			v := version{major, minor}
			if major != minVersion.major {
				return v, errdefs.NotAcceptable("Mutually exclusive versions requested. Version %s requested but not supported by this service. The supported version range is: [%s, %s].",
					v, minVersion, maxVersion)
			}
			if minor < minVersion.minor || minor > maxVersion.minor {
				return v, errdefs.NotAcceptable("Version %s was requested but the minor version is not supported by this service. The supported version range is: [%s, %s].",
					v, minVersion, maxVersion)
			}
			return v, nil
		}
	}
	return version{}, errdefs.NotAcceptable("Invalid value for %s header", wire.APIVersionHeader)
}

// versioned negotiates the microversion of a /v1 request and answers with
// Ironic's version headers before calling h.
func (s *Server) versioned(h func(http.ResponseWriter, *http.Request, version)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(wire.APIMinVersionHeader, minVersion.String())
		w.Header().Set(wire.APIMaxVersionHeader, maxVersion.String())
		v, err := parseVersion(r.Header)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set(wire.APIVersionHeader, v.String())
		h(w, r, v)
	}
}
