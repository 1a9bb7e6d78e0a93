package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/wire"
)

// statusOf is the one mapping from error classes to HTTP statuses.
func statusOf(err error) int {
	var tooBig *http.MaxBytesError
	var badMove *statemachine.InvalidTransitionError
	switch {
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.As(err, &badMove),
		errors.Is(err, power.ErrUnsupported), errors.Is(err, power.ErrInvalidDriverInfo):
		// Driver refusals are Ironic's UnsupportedDriverExtension and
		// InvalidParameterValue: client errors.
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrForbidden):
		return http.StatusForbidden
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

// decodeBody decodes a JSON request body of at most limit bytes.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return errdefs.InvalidArgument("Invalid JSON body: %v", err)
	}
	return nil
}

func errNotFoundPath() error { return errdefs.NotFound("The resource could not be found.") }
