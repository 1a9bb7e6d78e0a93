package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/wire"
)

// version is an API microversion.
type version struct{ major, minor int }

// String formats the version as "1.82".
func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// The range served: 1.1 to 1.110 (Ironic 2026.1, the newest version
// Metal3's baremetal-operator asks for).
var (
	minVersion = version{1, 1}
	maxVersion = version{1, ironicjson.MaxMinor}
)

// parseVersion reads the requested version from
// X-OpenStack-Ironic-API-Version or, when that is absent, the standard
// "OpenStack-API-Version: baremetal X.Y": absent means the minimum,
// "latest" the maximum (Ironic's Version.parse_headers).
func parseVersion(h http.Header) (version, error) {
	s := strings.TrimSpace(h.Get(wire.APIVersionHeader))
	if s == "" {
		for _, v := range h.Values(standardVersionHeader) {
			if svc, ver, ok := strings.Cut(strings.TrimSpace(v), " "); ok && strings.EqualFold(svc, "baremetal") {
				s = strings.TrimSpace(ver)
				break
			}
		}
	}
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

// Headers of the standard microversion and of request IDs.
const (
	standardVersionHeader = "OpenStack-API-Version"
	requestIDHeader       = "OpenStack-Request-Id"
	xRequestIDHeader      = "X-OpenStack-Request-Id"
)

// minorXRequestID is the version from which X-OpenStack-Request-Id
// mirrors OpenStack-Request-Id.
const minorXRequestID = 107

// versioned negotiates the microversion of a /v1 request and answers with
// Ironic's version headers and a request ID before calling h.
func (s *Server) versioned(h func(http.ResponseWriter, *http.Request, version)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := "req-" + uuid.NewString()
		w.Header().Set(requestIDHeader, id)
		w.Header().Set(wire.APIMinVersionHeader, minVersion.String())
		w.Header().Set(wire.APIMaxVersionHeader, maxVersion.String())
		v, err := parseVersion(r.Header)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if v.minor >= minorXRequestID {
			w.Header().Set(xRequestIDHeader, id)
		}
		w.Header().Set(wire.APIVersionHeader, v.String())
		w.Header().Set(standardVersionHeader, "baremetal "+v.String())
		h(w, r, v)
	}
}
