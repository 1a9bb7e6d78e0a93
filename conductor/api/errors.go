package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/wire"
)

// statusOf is the one mapping from error classes to HTTP statuses.
func statusOf(err error) int {
	var tooBig *bodyTooLarge
	var badMove *statemachine.InvalidTransitionError
	switch {
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.As(err, &badMove),
		errors.Is(err, power.ErrUnsupported), errors.Is(err, power.ErrInvalidDriverInfo):
		// Driver refusals are Ironic's UnsupportedDriverExtension and
		// InvalidParameterValue: client errors.
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrAlreadyExists), errors.Is(err, errdefs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrNotAcceptable):
		return http.StatusNotAcceptable
	case errors.Is(err, errdefs.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, errdefs.ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers with Ironic's error body: {"error_message": "<JSON
// string of {faultcode, faultstring, debuginfo}>"}. Server errors are
// logged and answered without their details.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg, ok := errdefs.Message(err)
	if !ok {
		msg = err.Error()
	}
	code := wire.FaultClient
	if status == http.StatusNotImplemented {
		code = wire.FaultServer
	} else if status >= 500 {
		code = wire.FaultServer
		s.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		msg = "An internal server error occurred; see the conductor log."
	}
	writeJSON(w, status, wire.NewIronicError(code, msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// bodyTooLarge is a request body over its route's cap: 413, with the
// API's error body.
type bodyTooLarge struct{ limit int64 }

func (e *bodyTooLarge) Error() string {
	return fmt.Sprintf("The request body is larger than the limit of %d bytes for this request.", e.limit)
}

// Reading a body: a large one (provision requests with a config drive,
// inspection data) gets more time than the server's ReadTimeout, in
// proportion to its cap.
const (
	bodyReadBase = time.Minute
	bodyReadRate = 256 << 10 // bytes per second, at least
)

// decodeBody decodes a JSON request body of at most limit bytes into v:
// one JSON value and nothing after it. A body declared larger than the
// cap is refused before it is read, one that turns out larger as soon as
// it passes the cap (413).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if r.ContentLength > limit {
		return &bodyTooLarge{limit: limit}
	}
	if limit > maxBody {
		// Errors mean the writer cannot extend deadlines (tests).
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadBase + time.Duration(limit/bodyReadRate)*time.Second))
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.UseNumber()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON value")
			var tooBig *http.MaxBytesError
			if errors.As(terr, &tooBig) {
				err = terr
			}
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &bodyTooLarge{limit: limit}
		}
		var bad *errdefs.Error
		if errors.As(err, &bad) {
			return err // refused by a field's own decoder (configdrive)
		}
		return errdefs.InvalidArgument("Invalid JSON body: %v", err)
	}
	return nil
}

func errNotFoundPath() error { return errdefs.NotFound("The resource could not be found.") }
