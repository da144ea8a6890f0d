package smtptest_test

import (
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"slices"
	"testing"
	"time"

	"github.com/aftercare/aftercare/internal/smtptest"
)

const raw = "From: care@clinic.example\r\nTo: ana@example.com\r\nSubject: Hello\r\n\r\nSee you soon.\r\n"

func newServer(t *testing.T) *smtptest.Server {
	t.Helper()
	srv, err := smtptest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func send(srv *smtptest.Server) error {
	auth := smtp.PlainAuth("", "user", "secret", "127.0.0.1")
	return smtp.SendMail(srv.Addr(), auth, "care@clinic.example", []string{"ana@example.com"}, []byte(raw))
}

func TestAccepts(t *testing.T) {
	t.Parallel()
	srv := newServer(t)

	if err := send(srv); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	msgs, ok := srv.Wait(1, time.Minute)
	if !ok {
		t.Fatalf("Wait: got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "care@clinic.example" || !slices.Equal(m.To, []string{"ana@example.com"}) {
		t.Errorf("envelope = %q -> %q", m.From, m.To)
	}
	h, err := m.Header()
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	if got := h.Get("Subject"); got != "Hello" {
		t.Errorf("Subject = %q, want Hello", got)
	}
	if m.Received.IsZero() {
		t.Error("Received is zero")
	}
	if got := srv.Messages(); len(got) != 1 {
		t.Errorf("Messages() has %d messages, want 1", len(got))
	}
	if _, ok := srv.Wait(2, 10*time.Millisecond); ok {
		t.Error("Wait(2) reported two messages after one was sent")
	}
}

func TestReject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stage string
		code  int
		msg   string
		reply string // the text after the code, as the client reads it
	}{
		{"MAIL", 553, "5.1.8 sender refused", "5.1.8 sender refused"},
		{"RCPT", 550, "5.1.1 <ana@example.com>: mailbox unknown", "5.1.1 <ana@example.com>: mailbox unknown"},
		{"RCPT", 450, "4.2.0 try again later", "4.2.0 try again later"},
		{"DATA", 554, "5.6.0 message refused", "5.6.0 message refused"},
		{"DATA", 451, "local error", "4.0.0 local error"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.stage, tt.code), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t)
			srv.Reject(1, tt.stage, tt.code, tt.msg)

			var te *textproto.Error
			if err := send(srv); !errors.As(err, &te) {
				t.Fatalf("SendMail error = %v, want an SMTP reply", err)
			}
			if te.Code != tt.code || te.Msg != tt.reply {
				t.Errorf("reply = %d %q, want %d %q", te.Code, te.Msg, tt.code, tt.reply)
			}
			if len(srv.Messages()) != 0 {
				t.Error("a rejected message was kept")
			}
			if err := send(srv); err != nil {
				t.Fatalf("second SendMail after Reject(1, ...): %v", err)
			}
		})
	}
}

func TestSetDelay(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.SetDelay(100 * time.Millisecond)

	start := time.Now()
	if err := send(srv); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("send took %v, want at least the 100ms delay", d)
	}
}
