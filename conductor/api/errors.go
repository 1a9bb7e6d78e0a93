package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"

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
	if status == http.StatusNotImplemented || (status == http.StatusServiceUnavailable && ok) {
		// Both say what the client may do (nothing yet, retry later).
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
//
// The body is read once into a buffer of the declared size (grown as it
// comes otherwise) and decoded in place: a large body (a provision request
// with a config drive) costs its size, once, and fields decoding
// themselves (configdriveArg) see slices of it, not copies. Small bodies
// decode with json.Number for numbers; large-body routes have no bare
// numbers to keep.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if r.ContentLength > limit {
		return &bodyTooLarge{limit: limit}
	}
	if limit > maxBody {
		// Errors mean the writer cannot extend deadlines (tests).
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadBase + time.Duration(limit/bodyReadRate)*time.Second))
	}
	release, err := reserveBody(r, limit)
	if err != nil {
		return err
	}
	defer release()
	data, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &bodyTooLarge{limit: limit}
		}
		return errdefs.InvalidArgument("Invalid JSON body: %v", err)
	}
	if limit <= maxBody {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err = dec.Decode(v); err == nil && dec.InputOffset() < int64(len(data)) && len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
			err = errTrailing
		}
	} else {
		err = json.Unmarshal(data, v)
		var syn *json.SyntaxError
		if errors.As(err, &syn) && strings.Contains(syn.Error(), "after top-level value") {
			err = errTrailing
		}
	}
	if err != nil {
		var bad *errdefs.Error
		if errors.As(err, &bad) {
			return err // refused by a field's own decoder (configdrive)
		}
		return errdefs.InvalidArgument("Invalid JSON body: %v", err)
	}
	return nil
}

var errTrailing = errors.New("unexpected data after the JSON value")

// Request bodies held at once are bounded, whatever the number of
// clients: each request reserves what it may hold (its declared length,
// else its route's cap, twice for a large body that comes without a
// length) before it reads, and waits for others to finish when the
// budget is spent — bodyWait at most, then 503.
const (
	maxBodyMemory = 2 * maxProvisionBody
	// largeBody is where a body stops being small: the memory of earlier
	// requests is collected before one is read, so that the process's
	// peak is one such body, not one per request since the last GC.
	largeBody = 8 << 20
)

var (
	bodyMemory = semaphore.NewWeighted(maxBodyMemory)
	bodyWait   = 30 * time.Second
)

// reserveBody reserves the memory a request body of at most limit bytes
// may take.
func reserveBody(r *http.Request, limit int64) (release func(), err error) {
	n := limit
	if r.ContentLength >= 0 {
		n = r.ContentLength
	} else if limit > largeBody {
		n = min(2*limit, maxBodyMemory)
	}
	ctx, cancel := context.WithTimeout(r.Context(), bodyWait)
	defer cancel()
	if err := bodyMemory.Acquire(ctx, n); err != nil {
		return nil, errdefs.Unavailable("The conductor is busy reading other large requests; retry later.")
	}
	return func() { bodyMemory.Release(n) }, nil
}

// readBody reads a body whole: into a buffer of the declared length when
// there is one (one allocation), else in 1 MiB pieces put together at
// the end (no buffer regrown and copied as it comes).
func readBody(r io.Reader, declared int64) ([]byte, error) {
	if declared >= largeBody {
		runtime.GC()
	}
	if declared >= 0 {
		buf := make([]byte, declared)
		n, err := io.ReadFull(r, buf)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("the body ended after %d of the %d bytes declared", n, declared)
			}
			return nil, err
		}
		return buf, nil
	}
	var pieces [][]byte
	var total int
	for {
		piece := make([]byte, min(1<<20, max(512, total)))
		n, err := io.ReadFull(r, piece)
		pieces = append(pieces, piece[:n])
		total += n
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(pieces) == 1 {
		return pieces[0], nil
	}
	if total >= largeBody {
		runtime.GC()
	}
	return bytes.Join(pieces, nil), nil
}

func errNotFoundPath() error { return errdefs.NotFound("The resource could not be found.") }
