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
	"time"

	gomail "github.com/wneessen/go-mail"

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

// Sender sends email through one SMTP server. Each Send opens its own
// connection, so a Sender is safe for concurrent use.
type Sender struct {
	client *gomail.Client
	from   string
	domain string
}

// New returns a Sender for cfg, or an error naming what is wrong with it.
func New(cfg Config) (*Sender, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("MAIL_FROM %q is not an email address", cfg.From)
	}
	if cfg.FromName != "" {
		from.Name = cfg.FromName
	}
	host, opts, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	opts = append(opts, gomail.WithTimeout(cfg.Timeout))
	c, err := gomail.NewClient(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("SMTP_URL: %w", err)
	}
	_, domain, _ := strings.Cut(from.Address, "@")
	return &Sender{client: c, from: from.String(), domain: domain}, nil
}

// parseURL turns SMTP_URL into a host and go-mail options.
func parseURL(raw string) (string, []gomail.Option, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return "", nil, fmt.Errorf("SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
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
		return "", nil, fmt.Errorf("SMTP_URL scheme %q: use smtp (STARTTLS) or smtps (implicit TLS)", u.Scheme)
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return "", nil, fmt.Errorf("SMTP_URL port %q is not a number", p)
		}
	}
	opts = append(opts, gomail.WithPort(port))
	switch tls := u.Query().Get("tls"); tls {
	case "":
	case "none":
		if u.Scheme != "smtp" || !loopback(u.Hostname()) {
			return "", nil, fmt.Errorf("SMTP_URL: tls=none is allowed only for smtp:// on a loopback host, not %s", u.Hostname())
		}
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		return "", nil, fmt.Errorf("SMTP_URL: unknown tls=%s; the only value is none", tls)
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
	if err := s.client.DialAndSendWithContext(ctx, m); err != nil {
		return "", Classify(err)
	}
	return "<" + id + ">", nil
}

// MessageID is the Message-ID (without angle brackets) of the message with
// id, sent from domain.
func MessageID(id, domain string) string {
	return strings.NewReplacer(":", ".", "/", ".").Replace(id) + "@" + domain
}

// Classify wraps a go-mail error in a *aftercare.SendError: a temporary (4xx)
// reply is transient; a 5xx reply to the sender, recipient or message is
// permanent; a failure to connect, authenticate or talk is transient.
func Classify(err error) error {
	var se *gomail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		text := errors.New(aftercare.Redact(se.Error()))
		switch {
		case se.IsTemp():
			return &aftercare.SendError{Class: aftercare.ErrTransient, Code: fmt.Sprintf("smtp:%d", code), Err: text}
		case code >= 500 && code < 600 && se.Reason != gomail.ErrConnCheck:
			return &aftercare.SendError{Class: aftercare.ErrPermanent, Code: fmt.Sprintf("smtp:%d", code), Err: text}
		}
		return &aftercare.SendError{Class: aftercare.ErrTransient, Code: "smtp:send", Err: text}
	}
	return &aftercare.SendError{Class: aftercare.ErrTransient, Code: "smtp:connect", Err: errors.New(aftercare.Redact(err.Error()))}
}
