package api

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
)

// FuzzParseBooking feeds arbitrary bodies to the booking decoder and
// validator. Whatever the input, they must not panic, and every failure must
// be one the API answers with a 4xx: a request error or an EINVALID error
// naming at least one field.
func FuzzParseBooking(f *testing.F) {
	f.Add([]byte(`{"id":"bk_1001","treatment":"botox","appointment_at":"2026-12-01T15:00:00-05:00","duration_minutes":30,"patient":{"first_name":"Ana","phone":"+15555550123","email":"ana@example.com","timezone":"America/New_York","locale":"en","sms_opt_in":true,"email_opt_in":true}}`))
	f.Add([]byte(`{"id":"","patient":{"phone":"+1","email":"@","timezone":"Mars/Base"}}`))
	f.Add([]byte(`{"duration_minutes":1e400}`))
	f.Add([]byte(`{"patient":{"phone":"+٣٤٦١٢٣٤٥٦٧٨"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"id":"a"}{"id":"b"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := ParseBooking(bytes.NewReader(body))
		if err == nil {
			err = b.Normalize()
		}
		if err == nil {
			if b.AppointmentAt.IsZero() || len(b.Channels()) == 0 {
				t.Fatalf("accepted a booking without a time or a channel: %+v", b)
			}
			if _, err := time.LoadLocation(b.Patient.Timezone); err != nil {
				t.Fatalf("accepted time zone %q", b.Patient.Timezone)
			}
			return
		}
		var he *httpError
		if errors.As(err, &he) {
			if he.status < 400 || he.status > 499 {
				t.Fatalf("status %d for %q", he.status, body)
			}
			return
		}
		if e, ok := errors.AsType[*aftercare.Error](err); !ok || e.Code != aftercare.EINVALID || len(e.Fields) == 0 {
			t.Fatalf("error %v (%T) for %q is neither a request error nor a field error", err, err, body)
		}
	})
}
