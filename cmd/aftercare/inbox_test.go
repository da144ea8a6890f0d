package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare/internal/smtptest"
)

const onCall = "+15555550111"

// alertingClinic writes a clinic profile that alerts the care inbox and an
// on-call phone, again every second while an urgent text is open, and is
// open every day, all day.
func alertingClinic(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clinic.yaml")
	hours := ""
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		hours += "  " + d + `: "00:00-23:59"` + "\n"
	}
	profile := "name: Test Clinic\nphone: \"+1 555 555 0199\"\naddress: 1 Test Street\ntimezone: America/New_York\n" +
		"emergency_number: \"911\"\nopening_hours:\n" + hours +
		"alerts:\n  email: care@clinic.example\n  on_call_phone: \"" + onCall + "\"\n  reescalate_after: 1s\n"
	if err := os.WriteFile(path, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// alertsTo returns the emails the SMTP server took for to.
func alertsTo(mail *smtptest.Server, to string) []smtptest.Message {
	var out []smtptest.Message
	for _, m := range mail.Messages() {
		if len(m.To) == 1 && m.To[0] == to {
			out = append(out, m)
		}
	}
	return out
}

func (tb *testBundle) onCallTexts() int {
	n := 0
	for _, m := range tb.twilio.Messages() {
		if m.To == onCall {
			n++
		}
	}
	return n
}

// TestUrgentReply is the loop back to the clinic end to end: an urgent text
// through the fake Twilio is answered with the emergency advice, alerts the
// care inbox by email and the on-call phone by SMS, is alerted again while
// nobody resolves it, and stops once someone does through the CLI. Nothing
// the patient wrote reaches the log, the metrics or the dashboard.
func TestUrgentReply(t *testing.T) {
	t.Parallel()
	tb := start(t, "all", "", "AFTERCARE_CLINIC_FILE="+alertingClinic(t))
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_u", time.Now().Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_u", "consent", "sms", "sent")

	const words = "Help! my eyelid is drooping and it is hard to swallow"
	status, twiml, err := tb.twilio.Incoming(tb.url+"/webhooks/twilio/inbound", "SMurgent", patientTel, words)
	if err != nil || status != 200 || !strings.Contains(twiml, "call 911 now") || !strings.Contains(twiml, "alerted our team") {
		t.Fatalf("webhook = %d %q, %v; want the emergency advice", status, twiml, err)
	}
	// Twilio delivers it again: the same answer, nothing new.
	if _, again, _ := tb.twilio.Incoming(tb.url+"/webhooks/twilio/inbound", "SMurgent", patientTel, words); again != twiml {
		t.Errorf("a repeat answered %q", again)
	}

	// At once, then again (every second here) while it is open.
	waitFor(t, time.Minute, func() bool { return len(alertsTo(tb.smtp, "care@clinic.example")) >= 2 && tb.onCallTexts() >= 2 })
	first := alertsTo(tb.smtp, "care@clinic.example")[0]
	h, _ := first.Header()
	if !strings.HasPrefix(h.Get("Subject"), "URGENT") || !strings.Contains(string(first.Data), "hard to swallow") {
		t.Errorf("alert email %q lacks URGENT or the text", h.Get("Subject"))
	}

	var page struct {
		Items []struct {
			ID      string `json:"id"`
			Urgency string `json:"urgency"`
			Booking string `json:"booking_id"`
		} `json:"items"`
	}
	status, data := tb.request(t, "GET", "/v1/inbox?urgency=urgent", nil)
	if err := json.Unmarshal(data, &page); status != 200 || err != nil || len(page.Items) != 1 || page.Items[0].Booking != "bk_u" {
		t.Fatalf("GET /v1/inbox = %d %s", status, data)
	}
	id := page.Items[0].ID

	var out bytes.Buffer
	err = run(context.Background(), []string{"inbox", "resolve", id, "--note", "called her, on her way to the ER", "--url", tb.url, "--token", testToken},
		func(string) (string, bool) { return "", false }, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "resolved") {
		t.Fatalf("aftercare inbox resolve: %v\n%s", err, out.String())
	}
	emails, texts := len(alertsTo(tb.smtp, "care@clinic.example")), tb.onCallTexts()
	// The check planned before the resolve runs, finds the item resolved,
	// and plans no other.
	rdb := redis.NewClient(&redis.Options{Addr: tb.redisAddr})
	defer rdb.Close()
	waitFor(t, time.Minute, func() bool { return rdb.ZCard(context.Background(), "asynq:{alerts}:scheduled").Val() == 0 })
	tb.waitIdle(t)
	// A round already under way when the item was resolved may still go out.
	if n, m := len(alertsTo(tb.smtp, "care@clinic.example")), tb.onCallTexts(); n > emails+1 || m > texts+1 {
		t.Errorf("alerts went on after the resolve: %d emails (were %d), %d texts (were %d)", n, emails, m, texts)
	}

	out.Reset()
	err = run(context.Background(), []string{"inbox", "--url", tb.url, "--token", testToken},
		func(string) (string, bool) { return "", false }, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "Nothing waits for a person") {
		t.Errorf("aftercare inbox after the resolve: %v\n%s", err, out.String())
	}

	_, metrics := tb.get(t, "/metrics", "", "")
	_, dash := tb.get(t, "/monitoring/api/queues/alerts/archived_tasks", "ops", "ops-secret")
	for _, where := range []struct{ name, text string }{{"log", tb.logs.String()}, {"metrics", metrics}, {"dashboard", dash}} {
		for _, secret := range []string{"eyelid", "swallow", patientTel, "5555550123", "Ana"} {
			if strings.Contains(where.text, secret) {
				t.Errorf("the %s shows %q", where.name, secret)
			}
		}
	}
	if !strings.Contains(metrics, `aftercare_inbox_open_items{urgency="urgent"} 0`) {
		t.Errorf("metrics lack the open urgent count of 0")
	}
}

// TestNormalReplies: a question gets when to expect an answer and one alert
// email; a text from a number with no booking is kept all the same; a clear
// wish to stop opts out; "end of day 2" does not.
func TestNormalReplies(t *testing.T) {
	t.Parallel()
	tb := start(t, "all", "", "AFTERCARE_CLINIC_FILE="+alertingClinic(t))
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_n", time.Now().Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_n", "consent", "sms", "sent")
	hook := tb.url + "/webhooks/twilio/inbound"

	_, twiml, _ := tb.twilio.Incoming(hook, "SM1", patientTel, "Can I go to the gym tomorrow?")
	if !strings.Contains(twiml, "answer within 2 hours") {
		t.Errorf("question answered %q", twiml)
	}
	_, twiml, _ = tb.twilio.Incoming(hook, "SM2", "+15555550177", "Hello, who is this?")
	if !strings.Contains(twiml, "we have your message") {
		t.Errorf("stranger answered %q", twiml)
	}
	_, twiml, _ = tb.twilio.Incoming(hook, "SM3", patientTel, "End of day 2 and my brow still droops, should I come in?")
	if !strings.Contains(twiml, "call 911") {
		t.Errorf("a drooping brow answered %q", twiml)
	}
	if st, _ := tb.timeline(t, "bk_n").status("day1", "sms"); st != "scheduled" {
		t.Errorf("day1 SMS %s after \"End of day 2 ...\": it is not an opt-out", st)
	}
	_, twiml, _ = tb.twilio.Incoming(hook, "SM4", patientTel, "please stop texting me")
	if !strings.Contains(twiml, "no more texts") {
		t.Errorf("opt-out answered %q", twiml)
	}
	if st, _ := tb.timeline(t, "bk_n").status("day1", "sms"); st != "suppressed" {
		t.Errorf("day1 SMS %s after \"please stop texting me\", want suppressed", st)
	}
	// Three texts need a person (one urgent); the opt-out does not.
	var page struct {
		Items []struct{ Urgency string } `json:"items"`
	}
	_, data := tb.request(t, "GET", "/v1/inbox", nil)
	if err := json.Unmarshal(data, &page); err != nil || len(page.Items) != 3 || page.Items[0].Urgency != "urgent" {
		t.Errorf("open items %s, want 3, urgent first", data)
	}
	_, data = tb.request(t, "GET", "/v1/inbox?status=all", nil)
	if err := json.Unmarshal(data, &page); err != nil || len(page.Items) != 4 {
		t.Errorf("all items %s, want 4", data)
	}
	waitFor(t, time.Minute, func() bool { return len(alertsTo(tb.smtp, "care@clinic.example")) >= 3 })
}
