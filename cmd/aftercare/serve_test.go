package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
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
)

const (
	testToken  = "test-token"
	accountSID = "AC0123456789abcdef0123456789abcdef"
	authToken  = "0123456789abcdef0123456789abcdef"
	patientTel = "+15555550123"
	patientTo  = "ana@example.com"
	// testDataKey is the service's AFTERCARE_DATA_KEY.
	testDataKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

type testBundle struct {
	url       string
	redisAddr string
	twilio    *twiliotest.Server
	smtp      *smtptest.Server
	logs      *fixture.Buffer
}

// setup runs the whole service, wired by newApp exactly as serve does, on a
// private redis-server, with SMS going to a fake Twilio and email to an
// in-process SMTP server. The clinic has no quiet hours, so the test does
// not depend on the time of day.
func setup(t *testing.T) *testBundle {
	t.Helper()
	return start(t, config.RoleAll, "")
}

// start runs the service in role, on the Redis at redisURL (a new private
// one if empty), with extra settings as "NAME=value".
func start(t *testing.T, role, redisURL string, extra ...string) *testBundle {
	t.Helper()
	tw := twiliotest.New(accountSID, authToken)
	t.Cleanup(tw.Close)
	mail, err := smtptest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mail.Close() })

	clinicFile := writeClinic(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	redisAddr := ""
	if redisURL == "" {
		redisAddr = redistest.Addr(t)
		redisURL = "redis://" + redisAddr
	}
	env := map[string]string{
		"AFTERCARE_DATA_KEY":    testDataKey,
		"DASHBOARD_USER":        "ops",
		"DASHBOARD_PASSWORD":    "ops-secret",
		"AFTERCARE_PUBLIC_URL":  base, // the fake Twilio calls back here
		"REDIS_URL":             redisURL,
		"AFTERCARE_API_TOKENS":  testToken,
		"TWILIO_ACCOUNT_SID":    accountSID,
		"TWILIO_AUTH_TOKEN":     authToken,
		"TWILIO_FROM_NUMBER":    "+15555550100",
		"TWILIO_API_BASE_URL":   tw.URL(),
		"SMTP_URL":              mail.URL(),
		"MAIL_FROM":             "care@clinic.example",
		"AFTERCARE_CLINIC_FILE": clinicFile,
		"AFTERCARE_OUTBOX_FILE": "",
		"SHUTDOWN_TIMEOUT":      "5s",
		"AFTERCARE_DRAIN_GRACE": "0s",
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Role = role
	logs := &fixture.Buffer{}
	a, err := newApp(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() { // the service's side of what went wrong
			t.Logf("service log:\n%s", logs.String())
		}
	})
	return &testBundle{url: base, redisAddr: redisAddr, twilio: tw, smtp: mail, logs: logs}
}

// writeClinic writes the test clinic's profile: no quiet hours, so no test
// depends on the time of day.
func writeClinic(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clinic.yaml")
	profile := "name: Test Clinic\nphone: \"+1 555 555 0199\"\naddress: 1 Test Street\ntimezone: America/New_York\n"
	if err := os.WriteFile(path, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (tb *testBundle) request(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, tb.url+path, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

type timeline struct {
	Version                int                        `json:"version"`
	Status                 string                     `json:"status"`
	ConsentAcknowledgement *aftercare.Acknowledgement `json:"consent_acknowledgement"`
	History                []struct {
		Step    string `json:"step"`
		Channel string `json:"channel"`
		Attempt int    `json:"attempt"`
		Outcome string `json:"outcome"`
		Detail  string `json:"detail"`
	} `json:"history"`
	Messages []struct {
		Step       string    `json:"step"`
		Channel    string    `json:"channel"`
		SendAt     time.Time `json:"send_at"`
		Status     string    `json:"status"`
		ProviderID string    `json:"provider_id"`
		Error      string    `json:"error"`
	} `json:"messages"`
}

func (tb *testBundle) timeline(t *testing.T, id string) timeline {
	t.Helper()
	status, data := tb.request(t, "GET", "/v1/bookings/"+id, nil)
	if status != 200 {
		t.Fatalf("GET %s = %d %s", id, status, data)
	}
	var tl timeline
	if err := json.Unmarshal(data, &tl); err != nil {
		t.Fatal(err)
	}
	return tl
}

func (tl timeline) status(step, channel string) (string, string) {
	for _, m := range tl.Messages {
		if m.Step == step && m.Channel == channel {
			return m.Status, m.ProviderID
		}
	}
	return "absent", ""
}

func bookingBody(id string, appointment time.Time) map[string]any {
	return map[string]any{
		"id": id, "treatment": "botox", "duration_minutes": 0,
		"appointment_at": appointment.Format(time.RFC3339),
		"patient": map[string]any{
			"first_name": "Ana", "phone": patientTel, "email": patientTo,
			"timezone": "America/New_York", "locale": "en", "sms_opt_in": true, "email_opt_in": true,
		},
	}
}

// TestBookingDelivered is the foundation's promise end to end: a booking
// posted to the API reaches the patient by SMS through Twilio's REST API and
// by email through SMTP, the aftercare step fires on time, a repeat of the
// booking sends nothing twice, and no log line carries contact details.
func TestBookingDelivered(t *testing.T) {
	t.Parallel()
	tb := setup(t)

	// The treatment ends (duration 0) three whole seconds from now.
	end := time.Now().Truncate(time.Second).Add(3 * time.Second)
	body := bookingBody("bk_e2e", end)
	if status, data := tb.request(t, "POST", "/v1/bookings", body); status != 201 {
		t.Fatalf("POST = %d %s", status, data)
	}

	// Consent, by SMS and by email, right away.
	sms, ok := tb.twilio.Wait(1, time.Minute)
	if !ok {
		t.Fatalf("no consent SMS; got %d", len(sms))
	}
	if m := textSaying(t, sms, "confirm here"); m.To != patientTel || m.From != "+15555550100" || !strings.Contains(m.Body, "Test Clinic") || !strings.Contains(m.Body, "Reply STOP") {
		t.Errorf("consent SMS = %+v", m)
	}
	emails, ok := tb.smtp.Wait(1, time.Minute)
	if !ok {
		t.Fatal("no consent email")
	}
	h, err := emails[0].Header()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "multipart/alternative" {
		t.Errorf("email Content-Type = %q, want multipart/alternative", h.Get("Content-Type"))
	}
	if len(emails[0].To) != 1 || emails[0].To[0] != patientTo || !strings.Contains(h.Get("Subject"), "please read and confirm") {
		t.Errorf("consent email to %v, subject %q", emails[0].To, h.Get("Subject"))
	}
	if !strings.Contains(h.Get("Message-Id"), "bk_e2e.v1.consent.email@clinic.example") {
		t.Errorf("Message-ID = %q, want one derived from the task id", h.Get("Message-Id"))
	}

	// "Stay upright" at the end of treatment, not early. (How late it goes
	// is measured by aftercare-bench, not asserted here.)
	sms, ok = tb.twilio.Wait(2, time.Minute)
	if !ok {
		t.Fatal("no upright SMS")
	}
	consent, upright := textSaying(t, sms, "confirm here"), textSaying(t, sms, "stay upright")
	if late := upright.Received.Sub(end); late < 0 {
		t.Errorf("upright SMS arrived %s before the treatment ended", -late)
	}

	// The timeline shows what was sent, with the provider ids. The fake
	// answers before the worker records the answer: wait for the record.
	waitFor(t, time.Minute, func() bool {
		st, _ := tb.timeline(t, "bk_e2e").status("upright", "sms")
		return st == "sent"
	})
	tl := tb.timeline(t, "bk_e2e")
	for _, want := range []struct{ step, channel, status, id string }{
		{"consent", "sms", "sent", consent.SID},
		{"consent", "email", "sent", "<bk_e2e.v1.consent.email@clinic.example>"},
		{"upright", "sms", "sent", upright.SID},
		{"reminder", "sms", "skipped", ""},
		{"lie_down", "sms", "scheduled", ""},
	} {
		if st, id := tl.status(want.step, want.channel); st != want.status || id != want.id {
			t.Errorf("%s/%s = %s %q, want %s %q", want.step, want.channel, st, id, want.status, want.id)
		}
	}

	// The audit trail has each send with its provider id.
	sends := map[string]string{}
	for _, h := range tl.History {
		if h.Outcome == "sent" {
			sends[h.Step+"/"+h.Channel] = h.Detail
		}
	}
	if sends["consent/sms"] != consent.SID || sends["upright/sms"] != upright.SID || sends["consent/email"] == "" {
		t.Errorf("history sends = %v", sends)
	}

	// A repeat of the same booking sends nothing again.
	if status, data := tb.request(t, "POST", "/v1/bookings", body); status != 200 {
		t.Fatalf("re-POST = %d %s", status, data)
	}
	tb.waitIdle(t)
	if n := len(tb.twilio.Messages()); n != 2 {
		t.Errorf("%d SMS after re-POST, want 2", n)
	}
	if n := len(tb.smtp.Messages()); n != 1 {
		t.Errorf("%d emails after re-POST, want 1", n)
	}

	logs := tb.logs.String()
	if !strings.Contains(logs, `"outcome":"sent"`) {
		t.Errorf("no send attempt logged:\n%s", logs)
	}
	for _, secret := range []string{patientTel, "5555550123", patientTo, "Ana"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain patient data %q", secret)
		}
	}
}

// TestProviderFailures: a permanent Twilio error fails the message without
// retrying it; a transient one is retried and then succeeds.
func TestProviderFailures(t *testing.T) {
	t.Parallel()
	tb := setup(t)

	tb.twilio.Fail(1, 400, 21614, "To number is not a mobile number")
	body := bookingBody("bk_perm", time.Now().Add(48*time.Hour))
	if status, data := tb.request(t, "POST", "/v1/bookings", body); status != 201 {
		t.Fatalf("POST = %d %s", status, data)
	}
	waitFor(t, time.Minute, func() bool {
		st, _ := tb.timeline(t, "bk_perm").status("consent", "sms")
		return st == "failed"
	})
	tl := tb.timeline(t, "bk_perm")
	for _, m := range tl.Messages {
		if m.Step == "consent" && m.Channel == "sms" && !strings.Contains(m.Error, "twilio:21614") {
			t.Errorf("failed message error = %q, want the Twilio code", m.Error)
		}
	}
	if n := tb.twilio.Requests(); n != 1 {
		t.Errorf("%d requests to Twilio, want 1 (a permanent error is not retried)", n)
	}
	var audited bool
	for _, h := range tl.History {
		if h.Step == "consent" && h.Channel == "sms" {
			audited = h.Outcome == "failed" && h.Attempt == 1 && strings.Contains(h.Detail, "twilio:21614")
		}
	}
	if !audited {
		t.Errorf("history = %+v, want the failed attempt with its code", tl.History)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond) // poll

	}
}

// TestSenderSettingsNamed: a sender adapter names its own fields; the
// command reports each under the setting it comes from.
func TestSenderSettingsNamed(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(func(k string) (string, bool) {
		v, ok := map[string]string{
			"SMTP_URL": "http://mail.example", "MAIL_FROM": "care at clinic",
			"TWILIO_ACCOUNT_SID": "AC-1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": "+15555550100",
		}[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = senders(cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TWILIO_ACCOUNT_SID: must be letters and digits only") {
		t.Errorf("senders = %v, want the Twilio account SID named by its setting", err)
	}
	cfg.TwilioAccountSID = ""
	_, _, err = senders(cfg, io.Discard)
	for _, want := range []string{`MAIL_FROM: "care at clinic" is not an email address`, `SMTP_URL: scheme "http"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("senders = %v, want it to say %q", err, want)
		}
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) (string, bool) { return "", false }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"serve", "REDIS_URL", "HTTP_ADDR", "AFTERCARE_API_TOKENS", "TWILIO_ACCOUNT_SID",
		"TWILIO_API_BASE_URL", "SMTP_URL", "MAIL_FROM", "WORKER_CONCURRENCY", "AFTERCARE_CLINIC_FILE", "AFTERCARE_ENV"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("--help does not mention %s", name)
		}
	}
}

func TestBadConfigurationNamesTheSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"WORKER_CONCURRENCY": "many"}, []string{"WORKER_CONCURRENCY"}},
		{map[string]string{"SMS_RATE_LIMIT": "fast"}, []string{"SMS_RATE_LIMIT"}},
		{map[string]string{"AFTERCARE_ENV": "staging"}, []string{"AFTERCARE_ENV"}},
		{map[string]string{"TWILIO_ACCOUNT_SID": "AC1"}, []string{"TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"}},
		{map[string]string{"SMTP_URL": "smtp://mail.example:587"}, []string{"MAIL_FROM"}},
		{map[string]string{"AFTERCARE_ENV": "production"}, []string{"REDIS_URL", "AFTERCARE_API_TOKENS", "TWILIO_ACCOUNT_SID", "SMTP_URL", "AFTERCARE_PUBLIC_URL", "AFTERCARE_DATA_KEY"}},
		{map[string]string{"AFTERCARE_DATA_KEY": "c2hvcnQ="}, []string{"AFTERCARE_DATA_KEY", "openssl rand"}},
		{map[string]string{"AFTERCARE_CLINIC_FILE": "/nonexistent/clinic.yaml"}, []string{"AFTERCARE_CLINIC_FILE"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), []string{"serve"}, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("serve started with a bad configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}
