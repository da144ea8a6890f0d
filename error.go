package aftercare

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes. They are few on purpose: the API maps each to one HTTP status
// in a single table, and callers branch on the code, never on the message.
const (
	ECONFLICT     = "conflict"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	EUNAUTHORIZED = "unauthorized"
)

// Error is an error a caller can act on: a code, a human message, and for
// EINVALID the list of fields that are wrong and how to fix each.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
}

// FieldError names one invalid field (JSON path, e.g. "patient.phone") and
// says what to do about it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return e.Message + ": " + strings.Join(parts, "; ")
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return EINTERNAL
}

// Fields collects field errors while validating, in the order found.
type Fields []FieldError

// Add records a problem with field.
func (fs *Fields) Add(field, format string, args ...any) {
	*fs = append(*fs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns an EINVALID *Error listing the fields, or nil if there are none.
func (fs Fields) Err(what string) error {
	if len(fs) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: what, Fields: fs}
}

// Delivery failure classes. Each sender adapter wraps every error it returns
// in a *SendError carrying exactly one of these, so the worker decides
// between retrying and giving up with errors.Is, never by reading text.
var (
	// ErrPermanent: the provider refused the message and would refuse it
	// again (invalid number, unsubscribed recipient, unknown mailbox).
	ErrPermanent = errors.New("permanent delivery failure")
	// ErrTransient: the attempt failed for a reason that may pass
	// (timeout, connection refused, provider 5xx).
	ErrTransient = errors.New("transient delivery failure")
	// ErrRateLimited: the provider asked us to slow down.
	ErrRateLimited = errors.New("rate limited by provider")
	// ErrUncertain: the request reached the provider and no answer came
	// back (a timeout, a dropped connection): the message may have been
	// accepted, so sending it again could deliver it twice.
	ErrUncertain = errors.New("delivery outcome unknown")
	// ErrUnsubscribed: the recipient opted out with the provider (Twilio
	// 21610). It comes wrapped in a permanent SendError, and the number is
	// then recorded as opted out.
	ErrUnsubscribed = errors.New("recipient has opted out")
)

// SendError is the error a Sender returns: the class, a short provider code
// fit for storing on the message ("twilio:21211", "smtp:550"), and the cause.
type SendError struct {
	Class error
	Code  string
	Err   error
}

func (e *SendError) Error() string {
	return fmt.Sprintf("%v (%s): %v", e.Class, e.Code, e.Err)
}

// Unwrap exposes both the class and the cause to errors.Is and errors.As.
func (e *SendError) Unwrap() []error { return []error{e.Class, e.Err} }
