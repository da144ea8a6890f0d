package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/smtp"
)

// TestTallyRun feeds the chaos run's verdict one message at a time: what
// must count as delivered once, as ended with its reason, and what must be
// reported as a problem.
func TestTallyRun(t *testing.T) {
	t.Parallel()
	cutoff := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	due, later := cutoff.Add(-time.Minute), cutoff.Add(time.Hour)
	tests := []struct {
		name     string
		msg      aftercare.Message
		received int
		problem  string // "" if the message is fine
		counted  func(chaosTally) int
	}{
		{"sent and received once", aftercare.Message{SendAt: due, Status: aftercare.StatusSent}, 1, "",
			func(t chaosTally) int { return t.sentOnce }},
		{"delivered and received once", aftercare.Message{SendAt: due, Status: aftercare.StatusDelivered}, 1, "",
			func(t chaosTally) int { return t.sentOnce }},
		{"received twice", aftercare.Message{SendAt: due, Status: aftercare.StatusSent}, 2, "received 2 times",
			func(t chaosTally) int { return t.duplicates }},
		{"recorded sent, never received", aftercare.Message{SendAt: due, Status: aftercare.StatusSent}, 0, "never received",
			func(t chaosTally) int { return t.lost }},
		{"left sending", aftercare.Message{SendAt: due, Status: aftercare.StatusSending}, 0, "no final status",
			func(t chaosTally) int { return t.lost }},
		{"left scheduled", aftercare.Message{SendAt: due, Status: aftercare.StatusScheduled}, 0, "no final status",
			func(t chaosTally) int { return t.lost }},
		{"outcome unknown, received", aftercare.Message{SendAt: due, Status: aftercare.StatusFailed, Error: "outcome unknown: twilio:no-answer"}, 1, "",
			func(t chaosTally) int { return t.receivedUnknown }},
		{"outcome unknown, not received", aftercare.Message{SendAt: due, Status: aftercare.StatusFailed, Error: "outcome unknown: an earlier attempt stopped"}, 0, "",
			func(t chaosTally) int { return t.ended["failed: outcome unknown"] }},
		{"expired with its reason", aftercare.Message{SendAt: due, Status: aftercare.StatusExpired, Error: "send-by deadline passed"}, 0, "",
			func(t chaosTally) int { return t.ended["expired"] }},
		{"skipped with a planning note", aftercare.Message{SendAt: due, Status: aftercare.StatusSkipped, Note: "booked too late"}, 0, "",
			func(t chaosTally) int { return t.ended["skipped"] }},
		{"failed without a reason", aftercare.Message{SendAt: due, Status: aftercare.StatusFailed}, 0, "no reason recorded", nil},
		{"received but recorded failed", aftercare.Message{SendAt: due, Status: aftercare.StatusFailed, Error: "twilio:21211"}, 1, "received, but recorded failed", nil},
		{"not due, scheduled", aftercare.Message{SendAt: later, Status: aftercare.StatusScheduled}, 0, "",
			func(t chaosTally) int { return t.notDue }},
		{"not due, yet received", aftercare.Message{SendAt: later, Status: aftercare.StatusScheduled}, 1, "not due until", nil},
		{"not due, yet sent", aftercare.Message{SendAt: later, Status: aftercare.StatusSent}, 0, "not due until", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.msg.Step, tt.msg.Channel = "consent", aftercare.SMS
			rec := &aftercare.Record{Timeline: aftercare.Timeline{ID: "bk_1", Version: 1, Messages: []aftercare.Message{tt.msg}}}
			got := tallyRun([]*aftercare.Record{rec}, cutoff, map[msgKey]int{{"bk_1", "consent", aftercare.SMS}: tt.received}, 0)
			switch {
			case tt.problem == "" && len(got.violations) > 0:
				t.Errorf("problems %q, want none", got.violations)
			case tt.problem != "" && (len(got.violations) != 1 || !strings.Contains(got.violations[0], tt.problem)):
				t.Errorf("problems %q, want one saying %q", got.violations, tt.problem)
			}
			if tt.counted != nil && tt.counted(got) != 1 {
				t.Errorf("not counted where it belongs: %+v", got)
			}
		})
	}

	got := tallyRun(nil, cutoff, nil, 2)
	if len(got.violations) != 1 || !strings.Contains(got.violations[0], "belong to no booking") {
		t.Errorf("2 unmatched messages: problems %q", got.violations)
	}
}

// TestMatchReceived checks that the chaos run tells a booking's texts apart
// by their bodies, with or without the opt-out line, and its emails by
// Message-ID, and that a stranger's text counts as unmatched.
func TestMatchReceived(t *testing.T) {
	t.Parallel()
	clinic, err := config.LoadClinic("")
	if err != nil {
		t.Fatal(err)
	}
	protocols, err := protocol.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	r, err := messages.New(clinic, protocols)
	if err != nil {
		t.Fatal(err)
	}
	b := aftercare.Booking{ID: "bk_m", Treatment: "botox", AppointmentAt: time.Now().Add(time.Hour),
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com", Timezone: "UTC", SMSOptIn: true, EmailOptIn: true}}
	if err := b.Normalize(); err != nil {
		t.Fatal(err)
	}
	rec := &aftercare.Record{Booking: b, Timeline: aftercare.Timeline{ID: b.ID, Version: 2, Messages: []aftercare.Message{
		{Step: "consent", Channel: aftercare.SMS}, {Step: "upright", Channel: aftercare.SMS}, {Step: "consent", Channel: aftercare.Email},
	}}}
	text := func(step string, first bool) twiliotest.Message {
		out, err := r.Render(&rec.Booking, step, aftercare.SMS, first)
		if err != nil {
			t.Fatal(err)
		}
		return twiliotest.Message{To: b.Patient.Phone, Body: out.Text}
	}
	texts := []twiliotest.Message{text("consent", true), text("upright", false), text("upright", true), {To: "+15555550199", Body: "hello"}}
	_, domain, _ := strings.Cut(chaosFrom, "@")
	email := func(taskID string) smtptest.Message {
		return smtptest.Message{Data: fmt.Appendf(nil, "Message-ID: <%s>\r\nSubject: x\r\n\r\nbody\r\n", smtp.MessageID(taskID, domain))}
	}
	emails := []smtptest.Message{email("bk_m:v2:consent:email"), email("bk_m:v1:consent:email")}

	got, unmatched, err := matchReceived([]*aftercare.Record{rec}, r, texts, emails)
	if err != nil {
		t.Fatal(err)
	}
	want := map[msgKey]int{
		{"bk_m", "consent", aftercare.SMS}:   1,
		{"bk_m", "upright", aftercare.SMS}:   2,
		{"bk_m", "consent", aftercare.Email}: 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || unmatched != 2 {
		t.Errorf("matched %v and %d unmatched, want %v and 2 (a stranger's text, an email of another version)", got, unmatched, want)
	}
}
