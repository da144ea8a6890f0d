// Package smtptest runs an SMTP server in process that keeps what it
// accepts and can be told to refuse or stall, for tests and benchmarks.
package smtptest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/aftercare/aftercare/internal/received"
)

// Server is an SMTP server on the loopback interface. It is safe for
// concurrent use.
type Server struct {
	srv  *smtp.Server
	l    net.Listener
	done chan struct{}

	inbox received.Inbox[Message]

	mu       sync.Mutex
	delay    time.Duration
	rejects  int
	stage    string
	rejectAs *smtp.SMTPError
}

// Message is one accepted message.
type Message struct {
	From     string
	To       []string
	Data     []byte // raw RFC 5322 message as received
	Received time.Time
}

// Header parses the header of m.
func (m Message) Header() (mail.Header, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil, err
	}
	return msg.Header, nil
}

// New starts an SMTP server on 127.0.0.1 on a free port. It offers no TLS
// and accepts any or no AUTH PLAIN credentials.
func New() (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtptest: %w", err)
	}
	s := &Server{l: l, done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.ErrorLog = discard{}
	go s.srv.Serve(l)
	return s, nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.l.Addr().String() }

// URL returns an SMTP_URL for the server: smtp://127.0.0.1:PORT?tls=none.
func (s *Server) URL() string { return "smtp://" + s.Addr() + "?tls=none" }

// Close stops the server and drops open connections. Closing twice is a
// no-op.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	default:
		close(s.done)
	}
	// Close the listener here too: Serve may not have registered it with
	// s.srv yet. s.srv.Close then repeats that error, so it is dropped.
	err := s.l.Close()
	s.srv.Close()
	return err
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message { return s.inbox.All() }

// Len returns how many messages were accepted.
func (s *Server) Len() int { return s.inbox.Len() }

// Wait blocks until at least n messages have been accepted or timeout has
// passed, and returns the messages and whether there were n.
func (s *Server) Wait(n int, timeout time.Duration) ([]Message, bool) {
	return s.inbox.Wait(n, timeout)
}

// Reject makes the next times transactions fail at stage ("MAIL", "RCPT" or
// "DATA") with reply code and message, which may start with an enhanced
// status code: Reject(1, "RCPT", 550, "5.1.1 mailbox unknown"). It replaces
// any earlier Reject.
func (s *Server) Reject(times int, stage string, code int, message string) {
	e := &smtp.SMTPError{Code: code, Message: message}
	if ec, rest, ok := enhancedCode(message); ok {
		e.EnhancedCode, e.Message = ec, rest
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejects, s.stage, s.rejectAs = times, strings.ToUpper(stage), e
}

// SetDelay makes DATA wait d before answering.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// reject returns the error to answer stage with, if a Reject is due there.
func (s *Server) reject(stage string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rejects <= 0 || s.stage != stage {
		return nil
	}
	s.rejects--
	return s.rejectAs
}

func (s *Server) accept(m Message) { s.inbox.Add(m) }

// enhancedCode splits "5.1.1 text" into the code and the text.
func enhancedCode(message string) (smtp.EnhancedCode, string, bool) {
	var ec smtp.EnhancedCode
	first, rest, _ := strings.Cut(message, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return ec, message, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return smtp.EnhancedCode{}, message, false
		}
		ec[i] = n
	}
	return ec, rest, true
}

// session is one client connection.
type session struct {
	s    *Server
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(string, string, string) error { return nil }), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if err := ss.s.reject("MAIL"); err != nil {
		return err
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.s.reject("RCPT"); err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	delay := ss.s.delay
	ss.s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ss.s.done:
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Shutting down"}
		}
	}
	if err := ss.s.reject("DATA"); err != nil {
		return err
	}
	ss.s.accept(Message{From: ss.from, To: ss.to, Data: data, Received: time.Now()})
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// discard drops the server's internal error log.
type discard struct{}

func (discard) Printf(string, ...any) {}
func (discard) Println(...any)        {}
