// Package errdefs defines the small, fixed set of error classes the
// conductor uses. Packages wrap these with %w (or build them with the
// constructors here, which also carry the message an API client sees);
// exactly one function, in the API package, turns a class into an HTTP
// status and Ironic's error body.
package errdefs

import (
	"errors"
	"fmt"
)

// Error classes. Test with errors.Is.
var (
	// ErrInvalidArgument: the request is malformed or names an impossible
	// action (Ironic's Invalid, InvalidParameterValue, InvalidStateRequested).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the resource does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a unique attribute (UUID, name, MAC) is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the resource is in a state that forbids the operation
	// right now (Ironic's InvalidState, NodeLocked).
	ErrConflict = errors.New("conflict")
	// ErrNotAcceptable: the requested API microversion cannot serve the
	// request.
	ErrNotAcceptable = errors.New("not acceptable")
	// ErrUnavailable: a dependency is temporarily unavailable.
	ErrUnavailable = errors.New("unavailable")
	// ErrNotImplemented: the operation is part of the API but this
	// conductor (or the node's driver) does not implement it yet.
	ErrNotImplemented = errors.New("not implemented")
	// ErrForbidden: the resource refuses the operation whoever asks
	// (Ironic's NodeProtected).
	ErrForbidden = errors.New("forbidden")
)

// Error is an error of one class with the message an API client is shown.
type Error struct {
	class error
	msg   string
}

// Error returns the client-facing message.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the class, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error { return e.class }

// Message returns the client-facing message of the first *Error in err's
// chain, and false when there is none.
func Message(err error) (string, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.msg, true
	}
	return "", false
}

func newf(class error, format string, args ...any) error {
	return &Error{class: class, msg: fmt.Sprintf(format, args...)}
}

// InvalidArgument returns an ErrInvalidArgument error with a message.
func InvalidArgument(format string, args ...any) error {
	return newf(ErrInvalidArgument, format, args...)
}

// NotFound returns an ErrNotFound error with a message.
func NotFound(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// AlreadyExists returns an ErrAlreadyExists error with a message.
func AlreadyExists(format string, args ...any) error {
	return newf(ErrAlreadyExists, format, args...)
}

// Conflict returns an ErrConflict error with a message.
func Conflict(format string, args ...any) error { return newf(ErrConflict, format, args...) }

// NotAcceptable returns an ErrNotAcceptable error with a message.
func NotAcceptable(format string, args ...any) error {
	return newf(ErrNotAcceptable, format, args...)
}

// Unavailable returns an ErrUnavailable error with a message.
func Unavailable(format string, args ...any) error { return newf(ErrUnavailable, format, args...) }

// NotImplemented returns an ErrNotImplemented error with a message.
func NotImplemented(format string, args ...any) error {
	return newf(ErrNotImplemented, format, args...)
}

// Forbidden returns an ErrForbidden error with a message.
func Forbidden(format string, args ...any) error { return newf(ErrForbidden, format, args...) }
