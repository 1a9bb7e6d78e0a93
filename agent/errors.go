package agent

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/rivetmetal/rivet/wire"
)

// Error is an error of the agent API with the four fields IPA serializes
// (type, code, message, details). Type carries IPA's class name, which
// Ironic sometimes reads.
type Error struct {
	Type    string
	Code    int
	Message string
	Details string
	// Err is the cause, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Details == "" {
		return e.Message
	}
	return e.Message + ": " + e.Details
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func newError(typ string, code int, msg string, cause error, format string, args ...any) *Error {
	return &Error{Type: typ, Code: code, Message: msg, Details: fmt.Sprintf(format, args...), Err: cause}
}

// Error constructors for IPA's error classes.
func errInvalidContent(format string, args ...any) *Error {
	return newError("InvalidContentError", http.StatusBadRequest, "Invalid request body", nil, format, args...)
}

func errInvalidCommand(format string, args ...any) *Error {
	return newError("InvalidCommandError", http.StatusBadRequest, "Invalid command", nil, format, args...)
}

// ErrInvalidParams builds the error a command's parameter validation
// returns (400, never a FAILED result).
func ErrInvalidParams(format string, args ...any) *Error {
	return newError("InvalidCommandParamsError", http.StatusBadRequest, "Invalid command parameters", nil, format, args...)
}

func errNotFound(format string, args ...any) *Error {
	return newError("RequestedObjectNotFoundError", http.StatusNotFound, "Not found", nil, format, args...)
}

func errBusy(name string) *Error {
	return newError("AgentIsBusy", http.StatusConflict, "Agent is busy", nil, "executing command %s", name)
}

func errUnauthorized() *Error {
	return &Error{Type: "Unauthorized", Code: http.StatusUnauthorized, Message: "401 Unauthorized", Details: "Token invalid."}
}

func errExecution(cause error) *Error {
	return newError("CommandExecutionError", http.StatusInternalServerError, "Command execution failed", cause, "%v", cause)
}

const versionMismatchType = "VersionMismatch"

// errVersionMismatch marks a step call whose hardware manager versions
// differ from this agent's; the command ends CLEAN_VERSION_MISMATCH.
func errVersionMismatch(format string, args ...any) *Error {
	return newError(versionMismatchType, http.StatusConflict, "Hardware managers version mismatch", nil, format, args...)
}

// commandError turns any error into the serialized command_error: agent
// errors keep their class, anything else becomes CommandExecutionError.
func commandError(err error) *wire.CommandError {
	var e *Error
	if !errors.As(err, &e) {
		e = errExecution(err)
	}
	return &wire.CommandError{Type: e.Type, Code: e.Code, Message: e.Message, Details: e.Details}
}

// httpError maps an error to the HTTP status and fault body of the agent
// API: the one place where errors become status codes.
func httpError(err error) (int, wire.Fault) {
	var e *Error
	if errors.As(err, &e) {
		code := "Client"
		if e.Code >= 500 {
			code = "Server"
		}
		return e.Code, wire.Fault{FaultCode: code, FaultString: e.Error()}
	}
	return http.StatusInternalServerError, wire.Fault{FaultCode: wire.FaultServer, FaultString: err.Error()}
}
