package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aftercare/aftercare"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// bookingRequest is the wire form of a booking: appointment_at is a string
// so that a malformed time is reported against its field.
type bookingRequest struct {
	ID              string            `json:"id"`
	Treatment       string            `json:"treatment"`
	AppointmentAt   string            `json:"appointment_at"`
	DurationMinutes int               `json:"duration_minutes"`
	Patient         aftercare.Patient `json:"patient"`
}

// decodeBooking reads a booking from the request body. Wrong content type,
// oversize bodies, malformed JSON, unknown fields and wrongly typed values
// each get their own error.
func decodeBooking(w http.ResponseWriter, r *http.Request) (aftercare.Booking, error) {
	var req bookingRequest
	err := decodeJSON(w, r, &req)
	if he, ok := errors.AsType[*httpError](err); err != nil && (!ok || !he.typeErrors) {
		return aftercare.Booking{}, err
	}
	b, berr := req.booking()
	if err == nil && berr == nil {
		return b, nil
	}
	// Some fields are of the wrong type or format: check the rest too, so
	// that one answer lists every field to fix.
	var fields aftercare.Fields
	for _, e := range []error{err, berr} {
		if e, ok := errors.AsType[*httpError](e); ok {
			fields = append(fields, e.fields...)
		}
		if e, ok := errors.AsType[*aftercare.Error](e); ok {
			fields = append(fields, e.Fields...)
		}
	}
	if e, ok := errors.AsType[*aftercare.Error](b.Normalize()); ok {
		for _, f := range e.Fields {
			if !slices.ContainsFunc(fields, func(o aftercare.FieldError) bool { return o.Field == f.Field }) {
				fields = append(fields, f)
			}
		}
	}
	return b, fields.Err("the booking is not valid")
}

func (req *bookingRequest) booking() (aftercare.Booking, error) {
	b := aftercare.Booking{
		ID:              req.ID,
		Treatment:       req.Treatment,
		DurationMinutes: req.DurationMinutes,
		Patient:         req.Patient,
	}
	if req.AppointmentAt != "" {
		t, err := parseTime("appointment_at", req.AppointmentAt, "the booking is not valid")
		if err != nil {
			return b, err
		}
		b.AppointmentAt = t
	}
	return b, nil
}

// parseTime parses an RFC 3339 time, or names field in the error.
func parseTime(field, value, what string) (time.Time, error) {
	if value == "" {
		return time.Time{}, (aftercare.Fields{{Field: field, Message: "is required, as an RFC 3339 time such as 2026-12-01T15:00:00-05:00"}}).Err(what)
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return t, (aftercare.Fields{{Field: field,
			Message: fmt.Sprintf("%q is not an RFC 3339 time; write it like 2026-12-01T15:00:00-05:00", value)}}).Err(what)
	}
	return t, nil
}

// ParseBooking reads a booking in the API's JSON form, as strictly as the
// API does: the CLI and the fuzz test use it. Its errors are the API's.
func ParseBooking(r io.Reader) (aftercare.Booking, error) {
	var req bookingRequest
	if err := decodeStrict(r, &req); err != nil {
		return aftercare.Booking{}, err
	}
	return req.booking()
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &httpError{status: http.StatusUnsupportedMediaType, title: "Unsupported media type",
				detail: fmt.Sprintf("the body must be JSON sent with Content-Type: application/json, not %q (with curl, use --json)", ct)}
		}
	}
	return decodeStrict(http.MaxBytesReader(w, r.Body, MaxBody), v)
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields, and turns each kind of failure into its own error.
func decodeStrict(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &httpError{status: http.StatusRequestEntityTooLarge, title: "Body too large",
			detail: fmt.Sprintf("the body is larger than %d KiB", MaxBody>>10)}
	}
	if err != nil {
		return &httpError{status: http.StatusBadRequest, title: "Unreadable body", detail: err.Error()}
	}
	if field := duplicateKey(data); field != "" {
		// encoding/json keeps the last of two, and matches keys whatever
		// their case: "email" twice would send the consent to one of them.
		return &httpError{status: http.StatusUnprocessableEntity, title: "Invalid request", detail: "a field is given twice",
			fields: []aftercare.FieldError{{Field: field, Message: "appears twice (keys are matched whatever their case); give it once"}}}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if dec.More() || dec.Decode(&struct{}{}) != io.EOF {
			return &httpError{status: http.StatusBadRequest, title: "Malformed JSON", detail: "the body must hold exactly one JSON object, with nothing after it"}
		}
		return nil
	}
	if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && typ.Field != "" {
		return wrongTypes(data, v, typ)
	}

	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return &httpError{status: http.StatusBadRequest, title: "Empty body", detail: "the body is empty; send a JSON object"}
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return &httpError{status: http.StatusBadRequest, title: "Malformed JSON", detail: "the body is not valid JSON: " + err.Error()}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return &httpError{status: http.StatusUnprocessableEntity, title: "Invalid request", detail: "a field has the wrong type",
			fields: []aftercare.FieldError{{Field: field, Message: "must be a JSON " + jsonKind(typ.Type.Kind().String())}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &httpError{status: http.StatusUnprocessableEntity, title: "Invalid request", detail: "the body has a field the API does not know",
			fields: []aftercare.FieldError{{Field: name, Message: "unknown field; check its spelling against /openapi.yaml"}}}
	default:
		return &httpError{status: http.StatusBadRequest, title: "Malformed JSON", detail: err.Error()}
	}
}

// wrongTypes lists every field of data of the wrong type for v, from the
// first, typ: encoding/json reports the first and skips it, so data is
// decoded again without it until none is left. v holds the rest.
func wrongTypes(data []byte, v any, typ *json.UnmarshalTypeError) error {
	var fields []aftercare.FieldError
	for typ != nil && typ.Field != "" && len(fields) < 20 {
		fields = append(fields, aftercare.FieldError{Field: typ.Field, Message: "must be a JSON " + jsonKind(typ.Type.Kind().String())})
		var ok bool
		if data, ok = without(data, typ.Field); !ok {
			break
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		typ, _ = errors.AsType[*json.UnmarshalTypeError](dec.Decode(v))
	}
	return &httpError{status: http.StatusUnprocessableEntity, title: "Invalid request", typeErrors: true,
		detail: "some fields have the wrong type", fields: fields}
}

// without returns the JSON object data without the field at path
// ("patient.sms_opt_in").
func without(data []byte, path string) ([]byte, bool) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&doc) != nil {
		return nil, false
	}
	obj := doc
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		var ok bool
		if obj, ok = obj[k].(map[string]any); !ok {
			return nil, false
		}
	}
	if _, ok := obj[keys[len(keys)-1]]; !ok {
		return nil, false
	}
	delete(obj, keys[len(keys)-1])
	out, err := json.Marshal(doc)
	return out, err == nil
}

// duplicateKey returns the path ("patient.email") of the first key that an
// object of the JSON in data holds twice, compared without case; "" if
// none does, or if data is not JSON (the decoder then says what is wrong).
func duplicateKey(data []byte) string {
	field, _ := duplicateIn(json.NewDecoder(bytes.NewReader(data)), "", 0)
	return field
}

// maxDepth bounds the nesting duplicateIn follows; deeper JSON is left to
// the decoder, which refuses it.
const maxDepth = 100

var errTooDeep = errors.New("nested too deep")

// duplicateIn reads one JSON value at path, depth levels down, from dec,
// and returns the path of the first key given twice in it.
func duplicateIn(dec *json.Decoder, path string, depth int) (string, error) {
	if depth > maxDepth {
		return "", errTooDeep
	}
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return "", err
			}
			key, _ := k.(string)
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			if seen[strings.ToLower(key)] {
				return sub, nil
			}
			seen[strings.ToLower(key)] = true
			if field, err := duplicateIn(dec, sub, depth+1); field != "" || err != nil {
				return field, err
			}
		}
	case json.Delim('['):
		for dec.More() {
			if field, err := duplicateIn(dec, path, depth+1); field != "" || err != nil {
				return field, err
			}
		}
	default:
		return "", nil
	}
	_, err = dec.Token() // the closing delimiter
	return "", err
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean (true or false)"
	case "int", "int64", "float64":
		return "number"
	case "struct", "map":
		return "object"
	default:
		return goKind
	}
}
