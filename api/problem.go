package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/aftercare/aftercare"
)

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string                 `json:"type"`
	Title  string                 `json:"title"`
	Status int                    `json:"status"`
	Detail string                 `json:"detail"`
	Errors []aftercare.FieldError `json:"errors,omitempty"`
}

// statuses maps each domain error code to its HTTP status and title: the
// one place where errors become statuses.
var statuses = map[string]struct {
	status int
	title  string
}{
	aftercare.EINVALID:      {http.StatusUnprocessableEntity, "Invalid request"},
	aftercare.ENOTFOUND:     {http.StatusNotFound, "Not found"},
	aftercare.ECONFLICT:     {http.StatusConflict, "Conflict"},
	aftercare.EUNAUTHORIZED: {http.StatusUnauthorized, "Unauthorized"},
	aftercare.EINTERNAL:     {http.StatusInternalServerError, "Internal error"},
}

// httpError is a failure of the request itself (its size, type or syntax)
// rather than of what it asks for.
type httpError struct {
	status int
	title  string
	detail string
	fields []aftercare.FieldError
	// typeErrors: fields of the wrong type, and nothing else wrong with
	// the body; the rest was decoded.
	typeErrors bool
}

func (e *httpError) Error() string {
	msg := e.detail
	for _, f := range e.fields {
		msg += "; " + f.Field + ": " + f.Message
	}
	return msg
}

func writeProblem(w http.ResponseWriter, err error) {
	var p problem
	if he, ok := errors.AsType[*httpError](err); ok {
		p = problem{Status: he.status, Title: he.title, Detail: he.detail, Errors: he.fields}
	} else {
		code := aftercare.ErrorCode(err)
		st := statuses[code]
		p = problem{Status: st.status, Title: st.title, Detail: "internal error; the server log has the details"}
		if e, ok := errors.AsType[*aftercare.Error](err); ok && code != aftercare.EINTERNAL {
			p.Detail, p.Errors = e.Message, e.Fields
		}
	}
	p.Type = "about:blank"
	if len(p.Errors) > 0 {
		p.Type = "urn:aftercare:problem:validation"
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // an answer read by people: "&" and "<token>" as typed
	_ = enc.Encode(p)
}

// hint adds how to fix err over HTTP to the message of the *aftercare.Error
// in its chain: the domain says what is wrong, the API which call mends it.
func hint(err error, fix string) error {
	e, ok := errors.AsType[*aftercare.Error](err)
	if !ok {
		return err
	}
	withFix := *e
	withFix.Message += "; " + fix
	return &withFix
}
