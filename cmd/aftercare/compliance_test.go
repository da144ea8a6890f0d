package main

import (
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/twiliotest"
)

// TestDeliveryReceipts: the fake Twilio calls back as Twilio does. A
// delivered receipt marks the SMS delivered; an undelivered SMS of a step
// with no email of its own is sent once by email; repeated callbacks change
// nothing; a forged one is refused.
func TestDeliveryReceipts(t *testing.T) {
	t.Parallel()
	tb := setup(t)

	// The treatment ends (duration 0) two whole seconds from now, so the
	// SMS-only "upright" step goes out soon after the consent.
	end := time.Now().Truncate(time.Second).Add(2 * time.Second)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_dr", end), 201)
	sms, ok := tb.twilio.Wait(2, time.Minute)
	if !ok {
		t.Fatalf("%d SMS, want consent and upright", len(sms))
	}
	consent, upright := textSaying(t, sms, "confirm here"), textSaying(t, sms, "stay upright")
	if want := tb.url + "/webhooks/twilio/status"; consent.StatusCallback != want {
		t.Errorf("StatusCallback = %q, want %q", consent.StatusCallback, want)
	}
	tb.waitStatus(t, "bk_dr", "upright", "sms", "sent")

	for range 2 { // the second is a duplicate
		if status, err := tb.twilio.Callback(consent.SID, "delivered", "", "tok-1"); err != nil || status != 200 {
			t.Fatalf("callback = %d, %v", status, err)
		}
	}
	tb.waitStatus(t, "bk_dr", "consent", "sms", "delivered")

	emailsBefore := len(tb.smtp.Messages())
	for range 3 { // Twilio may repeat a callback; only the first counts
		if status, err := tb.twilio.Callback(upright.SID, "undelivered", "30003", "tok-2"); err != nil || status != 200 {
			t.Fatalf("callback = %d, %v", status, err)
		}
	}
	tb.waitStatus(t, "bk_dr", "upright", "email", "sent")
	emails, _ := tb.smtp.Wait(emailsBefore+1, time.Minute)
	h, _ := emails[len(emails)-1].Header()
	if !strings.Contains(h.Get("Subject"), "A message from Test Clinic") || !strings.Contains(string(emails[len(emails)-1].Data), "stay upright") {
		t.Errorf("fallback email: subject %q", h.Get("Subject"))
	}
	tl := tb.timeline(t, "bk_dr")
	for _, m := range tl.Messages {
		if m.Step == "upright" && m.Channel == "sms" && (m.Status != "failed" || !strings.Contains(m.Error, "twilio:30003")) {
			t.Errorf("upright SMS = %s %q, want failed with the carrier code", m.Status, m.Error)
		}
	}
	tb.waitIdle(t)
	if n := len(tb.smtp.Messages()); n != emailsBefore+1 {
		t.Errorf("%d emails after repeated callbacks, want exactly one fallback", n-emailsBefore)
	}
	tb.checkTasks(t, "bk_dr")
}

// TestStopThroughTwilio: the patient's STOP, sent through the fake Twilio,
// suppresses every unsent SMS of the booking while email goes on.
func TestStopThroughTwilio(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_stop", time.Now().Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_stop", "consent", "sms", "sent")

	if status, err := tb.twilio.Reply(tb.url+"/webhooks/twilio/inbound", patientTel, "Stop."); err != nil || status != 200 {
		t.Fatalf("reply = %d, %v", status, err)
	}
	tl := tb.timeline(t, "bk_stop")
	for _, m := range tl.Messages {
		switch {
		case m.Channel == "sms" && m.Step != "consent" && m.Status != string(aftercare.StatusSuppressed):
			t.Errorf("%s/sms = %s after STOP", m.Step, m.Status)
		case m.Channel == "email" && m.Status == string(aftercare.StatusSuppressed):
			t.Errorf("%s/email suppressed; email is not affected by STOP", m.Step)
		}
	}
	tb.checkTasks(t, "bk_stop")
}

// textSaying returns the one text whose body contains phrase: texts due
// close together can arrive in either order.
func textSaying(t *testing.T, texts []twiliotest.Message, phrase string) twiliotest.Message {
	t.Helper()
	var found []twiliotest.Message
	for _, m := range texts {
		if strings.Contains(m.Body, phrase) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d texts say %q, want 1", len(found), phrase)
	}
	return found[0]
}
