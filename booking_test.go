package aftercare_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
)

func validBooking() aftercare.Booking {
	return aftercare.Booking{
		ID:              "bk_1001",
		Treatment:       "botox",
		AppointmentAt:   time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC),
		DurationMinutes: 30,
		Patient: aftercare.Patient{
			FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: "America/New_York", Locale: "en", SMSOptIn: true, EmailOptIn: true,
		},
	}
}

func TestNormalizeValid(t *testing.T) {
	t.Parallel()
	b := validBooking()
	b.Patient.Phone = "+1 (555) 555-0123"
	b.Patient.Email = " <ana@example.com>"
	b.Patient.Locale = "EN"
	if err := b.Normalize(); err != nil {
		t.Fatal(err)
	}
	if b.Patient.Phone != "+15555550123" {
		t.Errorf("phone = %q, want E.164", b.Patient.Phone)
	}
	if b.Patient.Email != "ana@example.com" {
		t.Errorf("email = %q", b.Patient.Email)
	}
	if b.Patient.Locale != "en" {
		t.Errorf("locale = %q", b.Patient.Locale)
	}
	if _, off := b.AppointmentAt.Zone(); off != -5*3600 {
		t.Errorf("appointment not in the patient's zone: %s", b.AppointmentAt)
	}
}

func TestNormalizeInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(b *aftercare.Booking)
		field  string
	}{
		{"empty id", func(b *aftercare.Booking) { b.ID = "" }, "id"},
		{"id with a space", func(b *aftercare.Booking) { b.ID = "bk 1" }, "id"},
		{"id too long", func(b *aftercare.Booking) { b.ID = string(make([]byte, 65)) }, "id"},
		{"no treatment", func(b *aftercare.Booking) { b.Treatment = " " }, "treatment"},
		{"no appointment", func(b *aftercare.Booking) { b.AppointmentAt = time.Time{} }, "appointment_at"},
		{"negative duration", func(b *aftercare.Booking) { b.DurationMinutes = -5 }, "duration_minutes"},
		{"no first name", func(b *aftercare.Booking) { b.Patient.FirstName = "" }, "patient.first_name"},
		{"national phone", func(b *aftercare.Booking) { b.Patient.Phone = "5555550123" }, "patient.phone"},
		{"phone letters", func(b *aftercare.Booking) { b.Patient.Phone = "+1 call me" }, "patient.phone"},
		{"phone too short", func(b *aftercare.Booking) { b.Patient.Phone = "+1555" }, "patient.phone"},
		{"landline", func(b *aftercare.Booking) { b.Patient.Phone = "+34 912 345 678" }, "patient.phone"},
		{"bad email", func(b *aftercare.Booking) { b.Patient.Email = "ana@" }, "patient.email"},
		{"email with a name", func(b *aftercare.Booking) { b.Patient.Email = "Ana <ana@example.com>" }, "patient.email"},
		{"unknown zone", func(b *aftercare.Booking) { b.Patient.Timezone = "Mars/Olympus" }, "patient.timezone"},
		{"no zone", func(b *aftercare.Booking) { b.Patient.Timezone = "" }, "patient.timezone"},
		{"Local is not a zone", func(b *aftercare.Booking) { b.Patient.Timezone = "Local" }, "patient.timezone"},
		{"Factory is not a place", func(b *aftercare.Booking) { b.Patient.Timezone = "Factory" }, "patient.timezone"},
		{"posixrules", func(b *aftercare.Booking) { b.Patient.Timezone = "posixrules" }, "patient.timezone"},
		{"an abbreviation", func(b *aftercare.Booking) { b.Patient.Timezone = "EST" }, "patient.timezone"},
		{"a POSIX rule", func(b *aftercare.Booking) { b.Patient.Timezone = "EST5EDT" }, "patient.timezone"},
		{"a line break in the name", func(b *aftercare.Booking) { b.Patient.FirstName = "Ana\nSTOP" }, "patient.first_name"},
		{"a NUL in the name", func(b *aftercare.Booking) { b.Patient.FirstName = "Ana\x00" }, "patient.first_name"},
		{"a direction override in the name", func(b *aftercare.Booking) { b.Patient.FirstName = "Ana\u202e" }, "patient.first_name"},
		{"quoted local part", func(b *aftercare.Booking) { b.Patient.Email = `"ana maria"@example.com` }, "patient.email"},
		{"local part too long", func(b *aftercare.Booking) { b.Patient.Email = strings.Repeat("a", 65) + "@example.com" }, "patient.email"},
		{"address too long", func(b *aftercare.Booking) { b.Patient.Email = "ana@" + strings.Repeat("a", 250) + ".com" }, "patient.email"},
		{"year 9999", func(b *aftercare.Booking) { b.AppointmentAt = time.Date(9999, 12, 31, 10, 0, 0, 0, time.UTC) }, "appointment_at"},
		{"unknown locale", func(b *aftercare.Booking) { b.Patient.Locale = "fr" }, "patient.locale"},
		{"sms without phone", func(b *aftercare.Booking) { b.Patient.Phone = "" }, "patient.phone"},
		{"email without address", func(b *aftercare.Booking) { b.Patient.Email = "" }, "patient.email"},
		{"no channel", func(b *aftercare.Booking) { b.Patient.SMSOptIn, b.Patient.EmailOptIn = false, false }, "patient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := validBooking()
			tt.change(&b)
			err := b.Normalize()
			var e *aftercare.Error
			if !errors.As(err, &e) || e.Code != aftercare.EINVALID {
				t.Fatalf("Normalize() = %v, want an EINVALID *Error", err)
			}
			if len(e.Fields) != 1 || e.Fields[0].Field != tt.field {
				t.Fatalf("fields = %+v, want exactly %q", e.Fields, tt.field)
			}
			if e.Fields[0].Message == "" {
				t.Error("field error has no message")
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"+15555550123", "+1555•••••23"},
		{"to +1 (555) 555-0123 now", "to +1 (5•••••23 now"},
		{"ana@example.com", "a•••@example.com"},
		{"maría@example.com", "m•••@example.com"},
		{"Ñandú.ruiz@correo.es", "Ñ•••@correo.es"},
		{"<rej@bücher.example>: mailbox unavailable", "<r•••@bücher.example>: mailbox unavailable"},
		{"550 5.1.1 user 李@例え.jp unknown", "550 5.1.1 user 李•••@例え.jp unknown"},
		{"The 'To' number +34612345678 is not valid", "The 'To' number +3461•••••78 is not valid"},
		{"sent at 2026-12-01T15:00:00-05:00", "sent at 2026-12-01T15:00:00-05:00"},
		{"booking bk_1001 step day1", "booking bk_1001 step day1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := aftercare.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzMessageRef: any payload is read or refused, never a panic, and a
// ref read back from its payload is the same ref.
func FuzzMessageRef(f *testing.F) {
	f.Add([]byte("bk_1:v2:day1:email 1764705600"))
	f.Add([]byte("bk-2_X:v12:lie_down:sms 1764705600 clinical"))
	f.Add([]byte(`{"booking_id":"bk_1","version":1,"step":"consent","channel":"sms","deadline":1}`))
	f.Add([]byte(`{"booking_id":"bk_1","version":1,"step":"a:b c","channel":"sms","priority":"routine"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		ref, err := aftercare.ParseMessageRef(payload)
		if err != nil {
			return
		}
		if back, err := aftercare.ParseMessageRef(ref.Payload()); err != nil || back != ref {
			t.Errorf("%q read as %+v, written as %q, read back as %+v, %v", payload, ref, ref.Payload(), back, err)
		}
	})
}

func TestMessageRef(t *testing.T) {
	t.Parallel()
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 2, Step: "day1", Channel: aftercare.Email}
	if got := ref.TaskID(); got != "bk_1:v2:day1:email" {
		t.Errorf("TaskID = %q", got)
	}
	if ref.TaskType() != aftercare.TypeSendEmail || ref.Queue() != aftercare.QueueEmail {
		t.Errorf("email ref routed to %s/%s", ref.TaskType(), ref.Queue())
	}
	clinical := aftercare.MessageRef{BookingID: "bk-2_X", Version: 12, Step: "lie_down", Channel: aftercare.SMS,
		Deadline: 1764705600, Priority: aftercare.PriorityClinical}
	if got := string(clinical.Payload()); got != "bk-2_X:v12:lie_down:sms 1764705600 clinical" {
		t.Errorf("Payload = %q", got)
	}
	routine := clinical
	routine.Priority = aftercare.PriorityRoutine
	for _, r := range []aftercare.MessageRef{ref, clinical, routine} {
		back, err := aftercare.ParseMessageRef(r.Payload())
		if err != nil || back != r {
			t.Fatalf("round trip = %+v, %v", back, err)
		}
	}
	// Tasks and provider links written by earlier releases hold JSON.
	old := `{"booking_id":"bk-2_X","version":12,"step":"lie_down","channel":"sms","deadline":1764705600,"priority":"clinical"}`
	if back, err := aftercare.ParseMessageRef([]byte(old)); err != nil || back != clinical {
		t.Errorf("JSON payload = %+v, %v", back, err)
	}
	for _, bad := range []string{`{}`, `not json`, `{"booking_id":"bk 1","version":1,"step":"x","channel":"sms"}`,
		`{"booking_id":"bk","version":1,"step":"x","channel":"fax"}`, ``, `bk:v1:x:sms`, `bk:v1:x:sms 0 clinical x`,
		`bk:1:x:sms 0`, `bk:v0:x:sms 0`, `bk:vx:x:sms 0`, `bk:v1::sms 0`, `bk:v1:x:fax 0`, `bk:v1:x:sms y`, `bk:v1:x:sms 0 urgent`,
		`b k:v1:x:sms 0`, `bk:v1:x:y:sms 0`, `bk:v1:x:sms  0`, `bk:v1:Day1:sms 0`,
		`{"booking_id":"bk","version":1,"step":"a b","channel":"sms"}`} {
		if _, err := aftercare.ParseMessageRef([]byte(bad)); err == nil {
			t.Errorf("ParseMessageRef(%s) accepted", bad)
		}
	}
}
