// Package smtp sends email with go-mail over SMTP and decides once, here,
// which SMTP failures are permanent and which are worth a retry.
package smtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/aftercare/aftercare"
)

// Config configures a Sender.
type Config struct {
	// URL is smtp://user:pass@host:587 (STARTTLS required), smtps://... (TLS
	// from the first byte, port 465 by default), or smtp://host:port?tls=none
	// for a server on the loopback interface only.
	URL string
	// From is the sender address; FromName the name shown with it.
	From     string
	FromName string
	// Timeout bounds one connection and send. Default 30 seconds.
	Timeout time.Duration
}

// Sender sends email through one SMTP server. It keeps up to maxIdle
// connections open between sends and gives each Send a connection of its
// own, so a Sender is safe for concurrent use.
type Sender struct {
	client *gomail.Client
	from   string
	domain string

	mu   sync.Mutex
	idle []idleConn // most recently used last
}

// maxIdle is how many connections a Sender keeps open between sends;
// idleFor is how long it keeps one unused before closing it rather than
// sending on it. Servers close idle clients after a few minutes; a
// connection they closed sooner is noticed and replaced (see Send).
const (
	maxIdle = 10
	idleFor = 15 * time.Second
)

// idleConn is a connection waiting for its next message.
type idleConn struct {
	c     *gosmtp.Client
	since time.Time
}

// New returns a Sender for cfg. A Config that cannot work is an EINVALID
// *aftercare.Error naming each bad field (URL, From).
func New(cfg Config) (*Sender, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	var fs aftercare.Fields
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		fs.Add("From", "%q is not an email address; use one such as care@clinic.example", cfg.From)
	}
	host, opts, err := parseURL(cfg.URL)
	if err != nil {
		fs.Add("URL", "%v", err)
	}
	if err := fs.Err("the SMTP settings are not valid"); err != nil {
		return nil, err
	}
	if cfg.FromName != "" {
		from.Name = cfg.FromName
	}
	// A connection is reused only after a message went through on it, which
	// ends the SMTP transaction, and a broken one shows at MAIL FROM (see
	// Send): neither the RSET after each message nor the NOOP before it is
	// needed.
	opts = append(opts, gomail.WithTimeout(cfg.Timeout), gomail.WithoutRset(), gomail.WithoutNoop())
	c, err := gomail.NewClient(host, opts...)
	if err != nil {
		return nil, (aftercare.Fields{{Field: "URL", Message: err.Error()}}).Err("the SMTP settings are not valid")
	}
	_, domain, _ := strings.Cut(from.Address, "@")
	return &Sender{client: c, from: from.String(), domain: domain}, nil
}

// parseURL turns the server URL into a host and go-mail options.
func parseURL(raw string) (string, []gomail.Option, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return "", nil, errors.New("must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
	}
	var opts []gomail.Option
	port := 587
	switch u.Scheme {
	case "smtp":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case "smtps":
		port = 465
		opts = append(opts, gomail.WithSSL())
	default:
		return "", nil, fmt.Errorf("scheme %q: use smtp (STARTTLS) or smtps (implicit TLS)", u.Scheme)
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return "", nil, fmt.Errorf("port %q is not a number", p)
		}
	}
	opts = append(opts, gomail.WithPort(port))
	switch tls := u.Query().Get("tls"); tls {
	case "":
	case "none":
		if u.Scheme != "smtp" || !loopback(u.Hostname()) {
			return "", nil, fmt.Errorf("tls=none is allowed only for smtp:// on a loopback host, not %s", u.Hostname())
		}
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		return "", nil, fmt.Errorf("unknown tls=%s; the only value is none", tls)
	}
	if user := u.User.Username(); user != "" {
		pass, _ := u.User.Password()
		opts = append(opts,
			gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(user), gomail.WithPassword(pass))
	}
	return u.Hostname(), opts, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send delivers msg as multipart/alternative (plain text and HTML). The
// Message-ID is derived from msg.ID, so a resend of the same message carries
// the same Message-ID and mail systems can recognise it. Every error is a
// *aftercare.SendError.
//
// Send uses an idle connection if there is one. If the server dropped it
// (the connection fails, or the server answers 421, before the message was
// accepted for delivery at MAIL FROM), nothing was sent: Send closes it and
// tries the next, and at last a new connection. A connection on which
// anything else failed is closed, never reused.
func (s *Sender) Send(ctx context.Context, msg aftercare.Outgoing) (string, error) {
	m := gomail.NewMsg()
	if err := m.From(s.from); err != nil {
		return "", &aftercare.SendError{Class: aftercare.ErrPermanent, Code: "smtp:from", Err: err}
	}
	if err := m.To(msg.To); err != nil {
		return "", &aftercare.SendError{Class: aftercare.ErrPermanent, Code: "smtp:to", Err: errors.New(aftercare.Redact(err.Error()))}
	}
	id := MessageID(msg.ID, s.domain)
	m.SetMessageIDWithValue(id)
	m.SetDate()
	m.Subject(msg.Subject)
	m.SetBodyString(gomail.TypeTextPlain, msg.Text)
	if msg.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	}
	for {
		c, reused, err := s.conn(ctx)
		if err != nil {
			return "", classify(fmt.Errorf("dial failed: %w", err))
		}
		err = s.client.SendWithSMTPClient(c, m)
		if err == nil {
			s.release(c)
			return "<" + id + ">", nil
		}
		go quit(c)
		if !reused || !dropped(err) {
			return "", classify(fmt.Errorf("send failed: %w", err))
		}
	}
}

// conn returns an idle connection, closing those idle for longer than
// idleFor, or else a new one; reused tells which. Like a dial, it fails
// once ctx is done.
func (s *Sender) conn(ctx context.Context) (c *gosmtp.Client, reused bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	for len(s.idle) > 0 {
		ic := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if time.Since(ic.since) < idleFor {
			s.mu.Unlock()
			return ic.c, true, nil
		}
		go quit(ic.c)
	}
	s.mu.Unlock()
	c, err = s.client.DialToSMTPClientWithContext(ctx)
	return c, false, err
}

// release keeps c for the next Send, or closes it if maxIdle are kept.
func (s *Sender) release(c *gosmtp.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idle) >= maxIdle {
		go quit(c)
		return
	}
	s.idle = append(s.idle, idleConn{c: c, since: time.Now()})
}

// Close closes the idle connections. The Sender stays usable.
func (s *Sender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ic := range s.idle {
		go quit(ic.c)
	}
	s.idle = nil
}

// quitTimeout bounds the goodbye on a connection being closed.
const quitTimeout = 5 * time.Second

// quit says QUIT on c and closes it, whether or not the server answers.
func quit(c *gosmtp.Client) {
	if c.UpdateDeadline(quitTimeout) != nil || c.Quit() != nil {
		c.Close()
	}
}

// dropped reports whether err says the server had closed, or was closing,
// the connection before it took the message: the connection failed at
// MAIL FROM, the first command of a message, without a reply or with 421
// ("closing transmission channel").
func dropped(err error) bool {
	se, ok := errors.AsType[*gomail.SendError](err)
	if !ok {
		return false
	}
	code := se.ErrorCode()
	return se.Reason == gomail.ErrConnCheck || (se.Reason == gomail.ErrSMTPMailFrom && (code == 0 || code == 421))
}

// MessageID is the Message-ID (without angle brackets) of the message with
// id, sent from domain.
func MessageID(id, domain string) string {
	return strings.NewReplacer(":", ".", "/", ".").Replace(id) + "@" + domain
}

// classify wraps a go-mail error in a *aftercare.SendError: a temporary (4xx)
// reply is transient; a 5xx reply to the sender, recipient or message is
// permanent; a failure to connect, authenticate or talk is transient, except
// no reply at all to the end of the message: the server may have taken it,
// so the outcome is unknown.
func classify(err error) error {
	var se *gomail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		text := errors.New(aftercare.Redact(se.Error()))
		switch {
		case se.Reason == gomail.ErrSMTPDataClose && code == 0:
			// The whole message went and no reply came back: the server
			// may have taken it for delivery.
			return &aftercare.SendError{Class: aftercare.ErrUncertain, Code: "smtp:no-answer", Err: text}
		case se.IsTemp():
			return &aftercare.SendError{Class: aftercare.ErrTransient, Code: fmt.Sprintf("smtp:%d", code), Err: text}
		case code >= 500 && code < 600 && se.Reason != gomail.ErrConnCheck:
			return &aftercare.SendError{Class: aftercare.ErrPermanent, Code: fmt.Sprintf("smtp:%d", code), Err: text}
		}
		return &aftercare.SendError{Class: aftercare.ErrTransient, Code: "smtp:send", Err: text}
	}
	return &aftercare.SendError{Class: aftercare.ErrTransient, Code: "smtp:connect", Err: errors.New(aftercare.Redact(err.Error()))}
}
