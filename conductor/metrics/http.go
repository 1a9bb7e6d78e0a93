package metrics

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// Routes of the ramdisk calls counted apart (the API's ServeMux patterns).
const (
	RouteHeartbeat = "POST /v1/heartbeat/{ident}"
	RouteLookup    = "GET /v1/lookup"
)

// routeOther labels requests no specific route matched.
const routeOther = "other"

// Middleware times every request next serves, labelled by the route
// pattern the innermost http.ServeMux matched (Request.Pattern, which a
// ServeMux sets on the request it is given) and the status code, and
// counts heartbeats and lookups by result. Requests without a specific
// pattern (unrouted paths, and any a handler re-dispatched on a copy of the
// request) are labelled "other", so the label's values stay the API's
// finite set of routes.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = routeOther
		}
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		switch route {
		case RouteHeartbeat:
			if sw.status/100 == 2 {
				m.heartbeats.WithLabelValues("accepted").Inc()
			} else {
				m.heartbeats.WithLabelValues("rejected").Inc()
			}
		case RouteLookup:
			switch {
			case sw.status == http.StatusOK:
				m.lookups.WithLabelValues("found").Inc()
			case sw.status == http.StatusNotFound:
				m.lookups.WithLabelValues("not_found").Inc()
			default:
				m.lookups.WithLabelValues("error").Inc()
			}
		}
	})
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

// WriteHeader records the status.
func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implies a 200 when no status was written.
func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps the underlying writer's zero-copy path (sendfile) for
// image downloads.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the underlying writer (to
// flush server-sent events, for one).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
