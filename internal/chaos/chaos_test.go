package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/smtp"
)

// TestTally feeds the chaos run's verdict one message at a time: what
// must count as delivered once, as ended with its reason, and what must be
// reported as a problem.
func TestTally(t *testing.T) {
	t.Parallel()
	cutoff := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	due, later := cutoff.Add(-time.Minute), cutoff.Add(time.Hour)
	tests := []struct {
		name     string
		msg      aftercare.Message
		received int
		problem  string // "" if the message is fine
		counted  func(Tally) int
	}{
		{"sent and received once", aftercare.Message{SendAt: due, Status: aftercare.StatusSent}, 1, "",
			func(t Tally) int { return t.SentOnce }},
		{"delivered and received once", aftercare.Message{SendAt: due, Status: aftercare.StatusDelivered}, 1, "",
			func(t Tally) int { return t.SentOnce }},
		{"received twice", aftercare.Message{SendAt: due, Status: aftercare.StatusSent}, 2, "received 2 times",
			func(t Tally) int { return t.Duplicates }},
		{"recorded sent, never received", aftercare.Message{SendAt: due, Status: aftercare.StatusSent}, 0, "never received",
			func(t Tally) int { return t.Lost }},
		{"left sending", aftercare.Message{SendAt: due, Status: aftercare.StatusSending}, 0, "no final status",
			func(t Tally) int { return t.Lost }},
		{"left scheduled", aftercare.Message{SendAt: due, Status: aftercare.StatusScheduled}, 0, "no final status",
			func(t Tally) int { return t.Lost }},
		{"outcome unknown, received", aftercare.Message{SendAt: due, Status: aftercare.StatusOutcomeUnknown, Error: "twilio:no-answer"}, 1, "",
			func(t Tally) int { return t.ReceivedUnknown }},
		{"outcome unknown, not received", aftercare.Message{SendAt: due, Status: aftercare.StatusOutcomeUnknown, Error: "an earlier attempt stopped"}, 0, "",
			func(t Tally) int { return t.Ended[aftercare.StatusOutcomeUnknown] }},
		{"outcome unknown, received twice", aftercare.Message{SendAt: due, Status: aftercare.StatusOutcomeUnknown, Error: "twilio:no-answer"}, 2, "received 2 times",
			func(t Tally) int { return t.Duplicates }},
		{"expired with its reason", aftercare.Message{SendAt: due, Status: aftercare.StatusExpired, Error: "its send-by deadline had passed"}, 0, "",
			func(t Tally) int { return t.Ended[aftercare.StatusExpired] }},
		{"skipped with a planning note", aftercare.Message{SendAt: due, Status: aftercare.StatusSkipped, Note: "booked too late"}, 0, "",
			func(t Tally) int { return t.Ended[aftercare.StatusSkipped] }},
		{"failed without a reason", aftercare.Message{SendAt: due, Status: aftercare.StatusFailed}, 0, "no reason recorded", nil},
		{"received but recorded failed", aftercare.Message{SendAt: due, Status: aftercare.StatusFailed, Error: "twilio:21211"}, 1, "received, but recorded failed", nil},
		{"not due, scheduled", aftercare.Message{SendAt: later, Status: aftercare.StatusScheduled}, 0, "",
			func(t Tally) int { return t.NotDue }},
		{"not due, yet received", aftercare.Message{SendAt: later, Status: aftercare.StatusScheduled}, 1, "not due until", nil},
		{"not due, yet sent", aftercare.Message{SendAt: later, Status: aftercare.StatusSent}, 0, "not due until", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.msg.Step, tt.msg.Channel = "consent", aftercare.SMS
			rec := &aftercare.Record{Timeline: aftercare.Timeline{ID: "bk_1", Version: 1, Messages: []aftercare.Message{tt.msg}}}
			got := tally([]*aftercare.Record{rec}, cutoff, map[msgKey]int{{"bk_1", "consent", aftercare.SMS}: tt.received}, 0)
			switch {
			case tt.problem == "" && len(got.Violations) > 0:
				t.Errorf("problems %q, want none", got.Violations)
			case tt.problem != "" && (len(got.Violations) != 1 || !strings.Contains(got.Violations[0], tt.problem)):
				t.Errorf("problems %q, want one saying %q", got.Violations, tt.problem)
			}
			if tt.counted != nil && tt.counted(got) != 1 {
				t.Errorf("not counted where it belongs: %+v", got)
			}
		})
	}

	got := tally(nil, cutoff, nil, 2)
	if len(got.Violations) != 1 || !strings.Contains(got.Violations[0], "belong to no booking") {
		t.Errorf("2 unmatched messages: problems %q", got.Violations)
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
	r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
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
		out, err := r.Render(rec, step, aftercare.SMS, first)
		if err != nil {
			t.Fatal(err)
		}
		return twiliotest.Message{To: b.Patient.Phone, Body: out.Text}
	}
	texts := []twiliotest.Message{text("consent", true), text("upright", false), text("upright", true), {To: "+15555550199", Body: "hello"}}
	_, domain, _ := strings.Cut(from, "@")
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

// TestRun makes a short run with every fault but worker kills (a killed
// worker's messages wait about a minute for asynq's lease to expire; CI's
// full chaos run has them), against an aftercare binary built for the test.
func TestRun(t *testing.T) {
	t.Parallel()
	redistest.RequireServer(t)
	if testing.Short() {
		t.Skip("builds the aftercare binary and runs for about half a minute")
	}
	bin := filepath.Join(t.TempDir(), "aftercare")
	build := exec.Command("go", "build", "-o", bin, "github.com/aftercare/aftercare/cmd/aftercare")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Aftercare: bin, Bookings: 40, Workers: 2, Concurrency: 4,
		Window: 20 * time.Second, Every: 3 * time.Second, Settle: time.Minute, Seed: 7,
		Faults: []string{"restart-redis", "twilio-500", "twilio-429", "twilio-stall", "smtp-refuse"},
		Fsync:  "everysec", Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	if !rep.OK() {
		t.Fatalf("problems:\n%s\n%s", out.String(), progress.String())
	}
	made := 0
	for _, n := range rep.Faults {
		made += n
	}
	if rep.Due != 5*40 || made == 0 || rep.SentOnce == 0 || rep.Faults["kill-worker"] != 0 {
		t.Errorf("%d messages due (want 200: each booking's consent and reminder by SMS and email, and its upright text), %d faults made, %d sent once; faults %v",
			rep.Due, made, rep.SentOnce, rep.Faults)
	}
	if rep.Events.Expected < 40 || rep.Events.Lost != 0 || rep.Events.Delivered != rep.Events.Expected {
		t.Errorf("events %+v, want every booking's events (at least its booking.scheduled) delivered", rep.Events)
	}
	if len(rep.PeakRSS) != 2 {
		t.Errorf("peak RSS of %d workers, want 2", len(rep.PeakRSS))
	}
}

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	good := Defaults
	good.Aftercare = "aftercare"
	for _, tt := range []struct {
		name string
		edit func(*Config)
	}{
		{"no binary", func(c *Config) { c.Aftercare = "" }},
		{"no bookings", func(c *Config) { c.Bookings = 0 }},
		{"short window", func(c *Config) { c.Window = 10 * time.Second }},
		{"bad fsync", func(c *Config) { c.Fsync = "never" }},
		{"unknown fault", func(c *Config) { c.Faults = []string{"flood"} }},
	} {
		cfg := good
		tt.edit(&cfg)
		if err := cfg.check(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	if err := good.check(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
