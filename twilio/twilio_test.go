package twilio_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/twilio"
)

const (
	accountSID = "AC00000000000000000000000000000001"
	authToken  = "0123456789abcdef0123456789abcdef"
	from       = "+15005550006"
	serviceSID = "MG00000000000000000000000000000002"
	callback   = "https://aftercare.example/twilio/status"
	patient    = "+15555550123"
)

// newFake starts a fake Twilio that lives as long as the test.
func newFake(t *testing.T) *twiliotest.Server {
	t.Helper()
	fake := twiliotest.New(accountSID, authToken)
	t.Cleanup(fake.Close)
	return fake
}

// newSender returns a Sender pointed at fake, sending From a number unless
// edit changes the config.
func newSender(t *testing.T, fake *twiliotest.Server, edit func(*twilio.Config)) *twilio.Sender {
	t.Helper()
	cfg := twilio.Config{
		AccountSID: accountSID,
		AuthToken:  authToken,
		From:       from,
		BaseURL:    fake.URL(),
		Timeout:    2 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := twilio.New(cfg)
	if err != nil {
		t.Fatalf("twilio.New: %v", err)
	}
	return s
}

func outgoing(to, text string) aftercare.Outgoing {
	return aftercare.Outgoing{ID: "task-1", Channel: aftercare.SMS, To: to, Text: text}
}

// sendErr sends one message that must fail and returns its *SendError after
// checking its class.
func sendErr(t *testing.T, s *twilio.Sender, msg aftercare.Outgoing, class error) *aftercare.SendError {
	t.Helper()
	sid, err := s.Send(context.Background(), msg)
	if err == nil {
		t.Fatalf("Send succeeded with SID %q, want an error", sid)
	}
	if !errors.Is(err, class) {
		t.Errorf("Send error %q: want class %v", err, class)
	}
	se, ok := errors.AsType[*aftercare.SendError](err)
	if !ok {
		t.Fatalf("Send error %q (%T) is not a *aftercare.SendError", err, err)
	}
	return se
}

func TestSend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		edit     func(*twilio.Config)
		wantFrom string
		wantMSS  string
	}{
		{
			name:     "from number",
			edit:     func(c *twilio.Config) { c.StatusCallback = callback },
			wantFrom: from,
		},
		{
			name: "messaging service",
			edit: func(c *twilio.Config) {
				c.From = ""
				c.MessagingServiceSID = serviceSID
				c.StatusCallback = callback
			},
			wantMSS: serviceSID,
		},
		{
			name: "messaging service wins over from",
			edit: func(c *twilio.Config) {
				c.MessagingServiceSID = serviceSID
				c.StatusCallback = callback
			},
			wantMSS: serviceSID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			s := newSender(t, fake, tt.edit)
			text := "Hi, how is the knee today? Reply 1-5."

			sid, err := s.Send(context.Background(), outgoing(patient, text))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := fake.Messages()
			if len(msgs) != 1 {
				t.Fatalf("fake got %d messages, want 1", len(msgs))
			}
			got := msgs[0]
			want := twiliotest.Message{
				SID:                 sid,
				To:                  patient,
				From:                tt.wantFrom,
				MessagingServiceSID: tt.wantMSS,
				Body:                text,
				StatusCallback:      callback,
				Received:            got.Received,
			}
			if got != want {
				t.Errorf("fake got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestSendClassifiesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		status, code int // answer queued with Fail; status 0 for none
		msg          aftercare.Outgoing
		token        string // auth token the sender uses; default the right one
		want         error
		wantCode     string
	}{
		{name: "invalid number", status: 400, code: 21211, want: aftercare.ErrPermanent, wantCode: "twilio:21211"},
		{name: "not a mobile", status: 400, code: 21614, want: aftercare.ErrPermanent, wantCode: "twilio:21614"},
		{name: "replied STOP", status: 400, code: 21610, want: aftercare.ErrPermanent, wantCode: "twilio:21610"},
		{name: "region disabled", status: 400, code: 21408, want: aftercare.ErrPermanent, wantCode: "twilio:21408"},
		{name: "unreachable from sender", status: 400, code: 21612, want: aftercare.ErrPermanent, wantCode: "twilio:21612"},
		{name: "too many requests", status: 429, code: 20429, want: aftercare.ErrRateLimited, wantCode: "twilio:20429"},
		{name: "internal error", status: 500, code: 20500, want: aftercare.ErrTransient, wantCode: "twilio:20500"},
		{name: "unavailable", status: 503, code: 20503, want: aftercare.ErrTransient, wantCode: "twilio:20503"},
		{name: "authenticate", status: 401, code: 20003, want: aftercare.ErrTransient, wantCode: "twilio:20003"},
		// A non-JSON answer comes from a proxy, not Twilio: its HTTP status
		// decides, and only 429 is not transient.
		{name: "429 not JSON", status: 429, want: aftercare.ErrRateLimited, wantCode: "twilio:http-429"},
		{name: "502 not JSON", status: 502, want: aftercare.ErrTransient, wantCode: "twilio:http-502"},
		{name: "400 not JSON", status: 400, want: aftercare.ErrTransient, wantCode: "twilio:http-400"},
		// The fake's own checks, reached through the real client.
		{name: "wrong token", token: "ffffffffffffffffffffffffffffffff", want: aftercare.ErrTransient, wantCode: "twilio:20003"},
		{name: "To not E.164", msg: outgoing("5555550123", "hi"), want: aftercare.ErrPermanent, wantCode: "twilio:21211"},
		{name: "empty body", msg: outgoing(patient, ""), want: aftercare.ErrPermanent, wantCode: "twilio:21602"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			if tt.status != 0 {
				fake.Fail(1, tt.status, tt.code, "refused by test")
			}
			s := newSender(t, fake, func(c *twilio.Config) {
				if tt.token != "" {
					c.AuthToken = tt.token
				}
			})
			msg := tt.msg
			if msg.To == "" {
				msg = outgoing(patient, "hi")
			}

			se := sendErr(t, s, msg, tt.want)
			if tt.wantCode != "" && se.Code != tt.wantCode {
				t.Errorf("Code = %q, want %q", se.Code, tt.wantCode)
			}
			if n := fake.Requests(); n != 1 {
				t.Errorf("fake got %d requests, want 1", n)
			}
			if n := len(fake.Messages()); n != 0 {
				t.Errorf("fake accepted %d messages, want 0", n)
			}
		})
	}
}

// A request that never reached Twilio is safe to send again.
func TestSendConnectionRefused(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	s := newSender(t, fake, nil)
	fake.Close()

	sendErr(t, s, outgoing(patient, "hi"), aftercare.ErrTransient)
}

// A request Twilio received and did not answer in time may have queued the
// text: the outcome is unknown, and sending again could deliver it twice.
func TestSendTimeoutIsUncertain(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.SetDelay(5 * time.Second)
	s := newSender(t, fake, func(c *twilio.Config) { c.Timeout = 100 * time.Millisecond })

	start := time.Now()
	se := sendErr(t, s, outgoing(patient, "hi"), aftercare.ErrUncertain)
	if errors.Is(se, aftercare.ErrTransient) {
		t.Errorf("a timeout after the request was written is %v, want it uncertain only", se)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Send took %v, want it cut off near the 100ms timeout", d)
	}
}

// The worst case of a slow Twilio: it queued the text and the answer never
// came. The message is out, so it must not count as safe to retry.
func TestSendStalledAfterAcceptIsUncertain(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.SetStall(5 * time.Second)
	s := newSender(t, fake, func(c *twilio.Config) { c.Timeout = 100 * time.Millisecond })

	sendErr(t, s, outgoing(patient, "hi"), aftercare.ErrUncertain)
	if n := len(fake.Messages()); n != 1 {
		t.Errorf("fake took %d messages, want the 1 it did not answer for", n)
	}
}

func TestSendErrorHidesPhoneNumber(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.Fail(1, 400, 21211, "The 'To' number "+patient+" is not a valid phone number.")
	s := newSender(t, fake, nil)

	se := sendErr(t, s, outgoing(patient, "hi"), aftercare.ErrPermanent)
	if strings.Contains(se.Error(), patient) {
		t.Errorf("error %q shows the patient's number", se.Error())
	}
	if !strings.Contains(se.Error(), "is not a valid phone number") {
		t.Errorf("error %q lost Twilio's explanation", se.Error())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*twilio.Config)
		want string
	}{
		{"no account SID", func(c *twilio.Config) { c.AccountSID = "" }, "AccountSID: is required"},
		{"no auth token", func(c *twilio.Config) { c.AuthToken = "" }, "AuthToken: is required"},
		{"no sender", func(c *twilio.Config) { c.From = "" }, "From: set a From number or a Messaging Service SID"},
		{"base URL scheme", func(c *twilio.Config) { c.BaseURL = "ftp://api.twilio.com" }, "BaseURL: \"ftp://api.twilio.com\" must be an http(s) URL"},
		{"base URL without scheme", func(c *twilio.Config) { c.BaseURL = "api.twilio.com" }, "must be an http(s) URL"},
		{"base URL unparsable", func(c *twilio.Config) { c.BaseURL = "http://[::1" }, "must be an http(s) URL"},
		{"token with punctuation", func(c *twilio.Config) { c.AuthToken = "abc-def" }, "AuthToken: must be letters and digits only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := twilio.Config{AccountSID: accountSID, AuthToken: authToken, From: from}
			tt.edit(&cfg)
			_, err := twilio.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestFind lists messages through twilio-go against the fake, page by page
// as Twilio serves them, to find a text in doubt.
func TestFind(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	s := newSender(t, fake, nil)
	ctx := context.Background()
	before := time.Now().Add(-time.Minute)
	first, err := s.Send(ctx, outgoing(patient, "the text in doubt"))
	if err != nil {
		t.Fatal(err)
	}
	// 120 later texts to the same number, and some to another: the one in
	// doubt is on the third page of 50, newest first.
	for i := range 120 {
		if _, err := s.Send(ctx, outgoing(patient, fmt.Sprintf("later text %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Send(ctx, outgoing("+15555550177", "the text in doubt")); err != nil {
		t.Fatal(err)
	}

	sid, err := s.Find(ctx, patient, []string{"nothing like it", "the text in doubt"}, before)
	if err != nil || sid != first {
		t.Errorf("Find = %q, %v; want %q", sid, err, first)
	}
	if sid, err := s.Find(ctx, patient, []string{"never sent"}, before); err != nil || sid != "" {
		t.Errorf("Find of a text never sent = %q, %v; want none", sid, err)
	}
	// Created before since: not looked at, nor are older pages.
	if sid, err := s.Find(ctx, patient, []string{"the text in doubt"}, time.Now().Add(time.Minute)); err != nil || sid != "" {
		t.Errorf("Find since later = %q, %v; want none", sid, err)
	}
	fake.Fail(1, 500, 20500, "Internal Server Error")
	if _, err := s.Find(ctx, patient, []string{"the text in doubt"}, before); !errors.Is(err, aftercare.ErrTransient) {
		t.Errorf("Find while Twilio fails = %v, want a transient error", err)
	}
}
