package smtp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/smtp"
)

var consent = aftercare.Outgoing{
	ID:      "bk_1:v1:consent:email",
	Channel: aftercare.Email,
	To:      "ana@example.com",
	Subject: "Your consent form — please sign before Friday",
	Text:    "Hi Ana,\nplease sign your consent form before your visit on Friday.\n",
	HTML:    "<p>Hi Ana,</p><p>please sign your consent form before your visit on Friday.</p>",
}

// newServer starts a smtptest.Server that is closed when the test ends.
func newServer(t *testing.T) *smtptest.Server {
	t.Helper()
	srv, err := smtptest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// newSender returns a Sender for url with the clinic's address.
func newSender(t *testing.T, url string, timeout time.Duration) *smtp.Sender {
	t.Helper()
	s, err := smtp.New(smtp.Config{URL: url, From: "care@clinic.example", FromName: "Example Aesthetics", Timeout: timeout})
	if err != nil {
		t.Fatalf("New(%q): %v", url, err)
	}
	return s
}

// sendError returns err as a *aftercare.SendError, failing the test if it
// is not one.
func sendError(t *testing.T, err error) *aftercare.SendError {
	t.Helper()
	var se *aftercare.SendError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want a *aftercare.SendError", err, err)
	}
	return se
}

func TestSend(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := newSender(t, srv.URL(), 5*time.Second)

	id, err := s.Send(context.Background(), consent)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs, ok := srv.Wait(1, time.Minute)
	if !ok || len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if got.From != "care@clinic.example" || len(got.To) != 1 || got.To[0] != consent.To {
		t.Errorf("envelope = %q -> %q, want care@clinic.example -> [%s]", got.From, got.To, consent.To)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(got.Data)))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	h := msg.Header

	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Name != "Example Aesthetics" || from.Address != "care@clinic.example" {
		t.Errorf("From = %q (%v), want Example Aesthetics <care@clinic.example>", h.Get("From"), err)
	}
	to, err := mail.ParseAddress(h.Get("To"))
	if err != nil || to.Address != consent.To {
		t.Errorf("To = %q (%v), want %s", h.Get("To"), err, consent.To)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != consent.Subject {
		t.Errorf("Subject = %q (%v), want %q", subject, err, consent.Subject)
	}
	wantID := "<" + smtp.MessageID(consent.ID, "clinic.example") + ">"
	if got := h.Get("Message-Id"); got != wantID {
		t.Errorf("Message-ID = %q, want %q", got, wantID)
	}
	if id != wantID {
		t.Errorf("Send returned %q, want the Message-ID %q", id, wantID)
	}

	mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", h.Get("Content-Type"), err)
	}
	parts := map[string]string{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		body, err := io.ReadAll(p) // NextPart undoes quoted-printable
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		mt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts[mt] = string(body)
	}
	// Mail travels with CRLF line endings.
	if got := strings.ReplaceAll(parts["text/plain"], "\r\n", "\n"); got != consent.Text {
		t.Errorf("text/plain part = %q, want %q", got, consent.Text)
	}
	if !strings.Contains(parts["text/html"], consent.HTML) {
		t.Errorf("text/html part = %q, want it to contain %q", parts["text/html"], consent.HTML)
	}
}

func TestSendKeepsMessageIDAcrossRetries(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := newSender(t, srv.URL(), 5*time.Second)

	var ids []string
	for range 2 {
		id, err := s.Send(context.Background(), consent)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		ids = append(ids, id)
	}
	msgs, ok := srv.Wait(2, time.Minute)
	if !ok {
		t.Fatalf("server received %d messages, want 2", len(msgs))
	}
	for i, m := range msgs {
		h, err := m.Header()
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Get("Message-Id"); got != ids[0] || ids[i] != ids[0] {
			t.Errorf("send %d: Message-ID %q, returned %q; want both %q", i+1, got, ids[i], ids[0])
		}
	}
}

// One Sender is shared by all worker goroutines.
func TestSendConcurrently(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := newSender(t, srv.URL(), 5*time.Second)

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			msg := consent
			msg.ID = fmt.Sprintf("bk_%d:v1:consent:email", i)
			if _, err := s.Send(context.Background(), msg); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	msgs, ok := srv.Wait(n, time.Minute)
	if !ok {
		t.Fatalf("server received %d messages, want %d", len(msgs), n)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		h, err := m.Header()
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Get("Message-Id")] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct Message-IDs, want %d", len(seen), n)
	}
}

func TestSendClassifiesReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stage string
		code  int
		msg   string
		want  error
	}{
		{"RCPT", 450, "4.2.1 mailbox busy", aftercare.ErrTransient},
		{"RCPT", 451, "4.3.0 local error", aftercare.ErrTransient},
		{"RCPT", 452, "4.2.2 mailbox full", aftercare.ErrTransient},
		{"DATA", 450, "4.7.1 greylisted", aftercare.ErrTransient},
		{"DATA", 451, "4.3.0 local error", aftercare.ErrTransient},
		{"DATA", 452, "4.3.1 insufficient storage", aftercare.ErrTransient},
		{"MAIL", 451, "4.3.0 try later", aftercare.ErrTransient},
		{"RCPT", 550, "5.1.1 mailbox unknown", aftercare.ErrPermanent},
		{"DATA", 554, "5.7.1 message refused", aftercare.ErrPermanent},
		{"MAIL", 553, "5.1.8 sender refused", aftercare.ErrPermanent},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.stage, tt.code), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t)
			srv.Reject(1, tt.stage, tt.code, tt.msg)
			s := newSender(t, srv.URL(), 5*time.Second)

			_, err := s.Send(context.Background(), consent)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send error = %v, want %v", err, tt.want)
			}
			if se := sendError(t, err); se.Code != fmt.Sprintf("smtp:%d", tt.code) {
				t.Errorf("Code = %q, want smtp:%d", se.Code, tt.code)
			}
		})
	}
}

func TestSendCannotConnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"server closed", func(t *testing.T) string {
			srv := newServer(t)
			srv.Close()
			return srv.URL()
		}},
		{"nothing listening", func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			return "smtp://" + l.Addr().String() + "?tls=none"
		}},
		{"server without STARTTLS", func(t *testing.T) string {
			return "smtp://" + newServer(t).Addr()
		}},
		{"server without TLS", func(t *testing.T) string {
			return "smtps://" + newServer(t).Addr()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSender(t, tt.url(t), 5*time.Second)

			_, err := s.Send(context.Background(), consent)
			if !errors.Is(err, aftercare.ErrTransient) {
				t.Fatalf("Send error = %v, want %v", err, aftercare.ErrTransient)
			}
			if se := sendError(t, err); se.Code != "smtp:connect" {
				t.Errorf("Code = %q, want smtp:connect", se.Code)
			}
		})
	}
}

// A server that got the whole message and never answered may have queued
// it: sending again could deliver it twice, so the outcome is unknown.
func TestSendNoAnswerToDataIsUncertain(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.SetDelay(5 * time.Second)
	s := newSender(t, srv.URL(), 200*time.Millisecond)

	_, err := s.Send(context.Background(), consent)
	if !errors.Is(err, aftercare.ErrUncertain) || errors.Is(err, aftercare.ErrTransient) {
		t.Fatalf("Send error = %v, want only %v", err, aftercare.ErrUncertain)
	}
	sendError(t, err)
}

func TestSendErrorHidesRecipient(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Reject(1, "RCPT", 550, "5.1.1 <ana@example.com>: mailbox unknown")
	s := newSender(t, srv.URL(), 5*time.Second)

	_, err := s.Send(context.Background(), consent)
	if !errors.Is(err, aftercare.ErrPermanent) {
		t.Fatalf("Send error = %v, want %v", err, aftercare.ErrPermanent)
	}
	if strings.Contains(err.Error(), "ana@example.com") {
		t.Errorf("error text shows the recipient: %s", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  smtp.Config
		want string // part of the error text
	}{
		{"bad scheme", smtp.Config{URL: "http://mail.example.com", From: "care@clinic.example"}, `scheme "http"`},
		{"no host", smtp.Config{URL: "mail.example.com:587", From: "care@clinic.example"}, "URL: must look like"},
		{"tls=none off loopback", smtp.Config{URL: "smtp://mail.example.com:25?tls=none", From: "care@clinic.example"}, "loopback"},
		{"tls=none with smtps", smtp.Config{URL: "smtps://127.0.0.1?tls=none", From: "care@clinic.example"}, "loopback"},
		{"unknown tls", smtp.Config{URL: "smtp://127.0.0.1:25?tls=maybe", From: "care@clinic.example"}, "unknown tls=maybe"},
		{"port out of range", smtp.Config{URL: "smtp://mail.example.com:70000", From: "care@clinic.example"}, "URL: "},
		{"bad from address", smtp.Config{URL: "smtp://mail.example.com", From: "care at clinic"}, "From: "},
		{"no from address", smtp.Config{URL: "smtp://mail.example.com"}, "From: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := smtp.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) error = %v, want one containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// The default port shows in the error from a server that is not there.
func TestNewDefaultPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want string
	}{
		{"smtps://127.0.0.1", "127.0.0.1:465"},
		{"smtp://127.0.0.1", "127.0.0.1:587"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			s := newSender(t, tt.url, time.Second)
			_, err := s.Send(context.Background(), consent)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Send error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// proxy forwards TCP connections to an SMTP server and counts them; drop
// cuts the open ones, as a server that closes idle clients does.
type proxy struct {
	l        net.Listener
	mu       sync.Mutex
	accepted int
	open     []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(func() { l.Close(); p.drop() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.accepted++
			p.open = append(p.open, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) url() string { return "smtp://" + p.l.Addr().String() + "?tls=none" }

func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}

// A Sender sends one message after another on one connection.
func TestSendReusesConnection(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	p := newProxy(t, srv.Addr())
	s := newSender(t, p.url(), 5*time.Second)
	t.Cleanup(s.Close)

	for i := range 3 {
		msg := consent
		msg.ID = fmt.Sprintf("bk_%d:v1:consent:email", i)
		if _, err := s.Send(context.Background(), msg); err != nil {
			t.Fatalf("Send %d: %v", i+1, err)
		}
	}
	if _, ok := srv.Wait(3, time.Minute); !ok {
		t.Fatal("server did not receive 3 messages")
	}
	if n := p.connections(); n != 1 {
		t.Errorf("%d connections for 3 sequential messages, want 1", n)
	}
}

// A connection the server dropped while it was idle is replaced: the next
// message goes out, once, on a new connection, with the same Message-ID a
// resend would carry.
func TestSendAfterServerDroppedConnection(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	p := newProxy(t, srv.Addr())
	s := newSender(t, p.url(), 5*time.Second)
	t.Cleanup(s.Close)

	if _, err := s.Send(context.Background(), consent); err != nil {
		t.Fatalf("first Send: %v", err)
	}
	p.drop()
	id, err := s.Send(context.Background(), consent)
	if err != nil {
		t.Fatalf("Send after the server dropped the connection: %v", err)
	}
	msgs, _ := srv.Wait(2, time.Minute)
	if len(msgs) != 2 {
		t.Fatalf("server received %d messages, want 2", len(msgs))
	}
	if h, err := msgs[1].Header(); err != nil || h.Get("Message-Id") != id {
		t.Errorf("second message Message-ID = %q (%v), want %q", h.Get("Message-Id"), err, id)
	}
	if n := p.connections(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// A server closing the session (421 at MAIL FROM) on a kept connection
// took nothing: the message goes out on a new connection. Any other
// failure is reported, and that connection is not used again.
func TestSendOnKeptConnectionFailures(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	p := newProxy(t, srv.Addr())
	s := newSender(t, p.url(), 5*time.Second)
	t.Cleanup(s.Close)
	send := func() error {
		_, err := s.Send(context.Background(), consent)
		return err
	}

	if err := send(); err != nil {
		t.Fatalf("first Send: %v", err)
	}
	srv.Reject(1, "MAIL", 421, "4.4.2 closing idle connection")
	if err := send(); err != nil {
		t.Fatalf("Send after a 421 on the kept connection: %v", err)
	}
	if n := p.connections(); n != 2 {
		t.Errorf("%d connections after the 421, want 2", n)
	}

	srv.Reject(1, "RCPT", 550, "5.1.1 mailbox unknown")
	if err := send(); !errors.Is(err, aftercare.ErrPermanent) {
		t.Fatalf("Send error = %v, want %v", err, aftercare.ErrPermanent)
	}
	if err := send(); err != nil {
		t.Fatalf("Send after a refused message: %v", err)
	}
	if n := p.connections(); n != 3 {
		t.Errorf("%d connections after a refused message, want 3", n)
	}
	if msgs, _ := srv.Wait(3, time.Minute); len(msgs) != 3 {
		t.Errorf("server received %d messages, want 3", len(msgs))
	}
}
