// Package twilio sends SMS through Twilio's Messages API with twilio-go, and
// decides once, here, which Twilio failures are permanent, transient or rate
// limits.
package twilio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/aftercare/aftercare"
)

// defaultBaseURL is Twilio's REST API.
const defaultBaseURL = "https://api.twilio.com"

// Config configures a Sender.
type Config struct {
	AccountSID string
	AuthToken  string
	// From is the sender number; MessagingServiceSID is used instead if set.
	From                string
	MessagingServiceSID string
	// BaseURL points the client at a Twilio-compatible API. Default
	// defaultBaseURL.
	BaseURL string
	// StatusCallback is the URL Twilio posts delivery receipts to; empty for
	// none.
	StatusCallback string
	// Timeout bounds one API call. Default 10 seconds.
	Timeout time.Duration
}

// Sender sends SMS with Twilio.
type Sender struct {
	api *api.ApiService
	cfg Config
}

// credential is what twilio-go accepts as an account SID or auth token; it
// refuses anything else on every call, so New refuses it once, at start-up.
var credential = regexp.MustCompile(`^[a-zA-Z0-9]+$`)

// New returns a Sender. twilio-go has no base-URL setting, so a BaseURL
// other than Twilio's own is applied by the HTTP transport, which rewrites
// each request's scheme, host and path prefix.
//
// twilio-go builds its requests without a context: a send in flight is
// bounded by Timeout, not by the caller's context.
func New(cfg Config) (*Sender, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = defaultBaseURL
	}
	var fs aftercare.Fields
	for _, c := range []struct{ field, value string }{{"AccountSID", cfg.AccountSID}, {"AuthToken", cfg.AuthToken}} {
		switch {
		case c.value == "":
			fs.Add(c.field, "is required")
		case !credential.MatchString(c.value):
			fs.Add(c.field, "must be letters and digits only; copy it again from the Twilio console")
		}
	}
	if cfg.From == "" && cfg.MessagingServiceSID == "" {
		fs.Add("From", "set a From number or a Messaging Service SID")
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		fs.Add("BaseURL", "%q must be an http(s) URL", cfg.BaseURL)
	}
	if err := fs.Err("the Twilio settings are not valid"); err != nil {
		return nil, err
	}
	var rt http.RoundTripper = errorBodies{next: unsent{next: transport()}}
	if cfg.BaseURL != defaultBaseURL {
		rt = rebase{base: base, next: rt}
	}
	httpClient := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: rt,
		// Like twilio-go's own client: a redirect is an answer, not a hop.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c := &client.Client{Credentials: client.NewCredentials(cfg.AccountSID, cfg.AuthToken), HTTPClient: httpClient}
	c.SetAccountSid(cfg.AccountSID)
	// Only the 2010 API is needed: building its service alone keeps the
	// other sixty-odd Twilio products out of the binary.
	return &Sender{api: api.NewApiService(client.NewRequestHandler(c)), cfg: cfg}, nil
}

// Send creates one Twilio message and returns its SID. Every error is a
// *aftercare.SendError.
func (s *Sender) Send(ctx context.Context, msg aftercare.Outgoing) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:canceled", Err: err}
	}
	params := (&api.CreateMessageParams{}).SetTo(msg.To).SetBody(msg.Text)
	if s.cfg.MessagingServiceSID != "" {
		params.SetMessagingServiceSid(s.cfg.MessagingServiceSID)
	} else {
		params.SetFrom(s.cfg.From)
	}
	if s.cfg.StatusCallback != "" {
		params.SetStatusCallback(s.cfg.StatusCallback)
	}
	resp, err := s.api.CreateMessage(params)
	if err != nil {
		return "", classify(err)
	}
	if resp.Sid == nil || *resp.Sid == "" {
		return "", &aftercare.SendError{Class: aftercare.ErrUncertain, Code: "twilio:no-sid", Err: errors.New("Twilio answered without a message SID")}
	}
	return *resp.Sid, nil
}

// findPage is how many messages Find asks Twilio for at a time.
const findPage = 50

// Find asks Twilio whether it took a text to to with one of bodies, since
// since: it lists the account's messages to that number, newest first, page
// by page, until it meets one created before since. It returns the text's
// SID, or "" if Twilio has none. Twilio lists a message as soon as it takes
// it, whether or not it has gone out yet. Every error is a
// *aftercare.SendError.
func (s *Sender) Find(ctx context.Context, to string, bodies []string, since time.Time) (string, error) {
	params := (&api.ListMessageParams{}).SetTo(to).SetPageSize(findPage)
	token, page := "", ""
	for {
		if err := ctx.Err(); err != nil {
			return "", &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:canceled", Err: err}
		}
		resp, err := s.api.PageMessage(params, token, page)
		if err != nil {
			return "", classify(err)
		}
		for _, m := range resp.Messages {
			created, err := time.Parse(time.RFC1123Z, deref(m.DateCreated))
			if err == nil && created.Before(since) {
				return "", nil // older than the text in doubt: no need to look further
			}
			if m.Sid != nil && slices.Contains(bodies, deref(m.Body)) {
				return *m.Sid, nil
			}
		}
		if resp.NextPageUri == nil || *resp.NextPageUri == "" {
			return "", nil
		}
		next, err := url.Parse(*resp.NextPageUri)
		if err != nil {
			return "", &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:next-page", Err: err}
		}
		token, page = next.Query().Get("PageToken"), next.Query().Get("Page")
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// permanent lists Twilio error codes that no retry can fix.
var permanent = map[int]string{
	21211: "invalid To number",
	21214: "To number cannot be reached",
	21217: "To number is not a valid phone number",
	21408: "sending to this region is not enabled",
	21610: "recipient replied STOP",
	21612: "To number cannot be reached from this sender",
	21614: "To number is not a mobile number",
	21617: "message body too long",
	21635: "To number cannot receive SMS",
}

// classify wraps a twilio-go error in a *aftercare.SendError of the right
// class: 429 or code 20429 is rate limited; listed codes and Twilio's other
// 4xx answers are permanent, except 401/403 (a credentials problem an
// operator can fix, so worth retrying); 5xx answers, answers that are not
// Twilio's JSON and failures before the request was written (refused
// connection, DNS, TLS) are transient. A request that was written and got no
// answer (timeout, dropped connection) is uncertain: Twilio may have queued
// the text.
func classify(err error) error {
	var rest *client.TwilioRestError
	if !errors.As(err, &rest) {
		if _, ok := errors.AsType[notSent](err); ok {
			return &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:network", Err: err}
		}
		return &aftercare.SendError{Class: aftercare.ErrUncertain, Code: "twilio:no-answer", Err: err}
	}
	code := fmt.Sprintf("twilio:%d", rest.Code)
	if rest.Code == 0 {
		// Not Twilio's own answer (see errorBodies): a proxy or gateway.
		code = fmt.Sprintf("twilio:http-%d", rest.Status)
	}
	class := aftercare.ErrTransient
	switch {
	case rest.Code == 20429 || rest.Status == http.StatusTooManyRequests:
		class = aftercare.ErrRateLimited
	case rest.Code == 0:
	case permanent[rest.Code] != "":
		class = aftercare.ErrPermanent
	case rest.Status == http.StatusUnauthorized || rest.Status == http.StatusForbidden:
		class = aftercare.ErrTransient
	case rest.Status >= 400 && rest.Status < 500:
		class = aftercare.ErrPermanent
	}
	// Twilio's messages can quote the recipient's number.
	cause := fmt.Errorf("twilio %d: %s", rest.Code, aftercare.Redact(rest.Message))
	if rest.Code == 21610 {
		cause = fmt.Errorf("%w: %w", aftercare.ErrUnsubscribed, cause)
	}
	return &aftercare.SendError{Class: class, Code: code, Err: cause}
}

// maxIdleConns is how many idle connections to Twilio a Sender keeps: as
// many as a worker has sends in flight. net/http keeps 2 by default, and
// with more sends in flight than that, sends keep opening (and
// TLS-handshaking) new connections.
const maxIdleConns = 100

// transport is net/http's default transport, keeping maxIdleConns.
func transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = maxIdleConns
	return t
}

// rebase sends each request to base instead of the host twilio-go chose.
type rebase struct {
	base *url.URL
	next http.RoundTripper
}

func (t rebase) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme = t.base.Scheme
	r.URL.Host = t.base.Host
	r.URL.Path = t.base.Path + req.URL.Path
	r.Host = t.base.Host
	return t.next.RoundTrip(r)
}

// unsent marks the errors of requests that never reached the wire (no
// connection, or it failed while the request was being written) as
// notSent: only those are safe to send again.
type unsent struct{ next http.RoundTripper }

func (t unsent) RoundTrip(req *http.Request) (*http.Response, error) {
	var written atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		written.Store(info.Err == nil)
	}}
	resp, err := t.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil && !written.Load() {
		err = notSent{err}
	}
	return resp, err
}

// notSent is the error of a request Twilio never received.
type notSent struct{ err error }

func (e notSent) Error() string { return e.err.Error() }
func (e notSent) Unwrap() error { return e.err }

// errorBodies makes error answers safe for twilio-go, which decodes an error
// body but never closes it, and which loses the HTTP status of a body that
// is not JSON. It reads the body of every 4xx/5xx answer into memory
// (releasing the connection), and replaces a non-JSON body with a Twilio
// error document that carries the HTTP status, so classify can tell a
// proxy's 429 or 502 apart.
type errorBodies struct{ next http.RoundTripper }

func (t errorBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if !json.Valid(body) {
		body, _ = json.Marshal(client.TwilioRestError{
			Status:  resp.StatusCode,
			Message: fmt.Sprintf("HTTP %d with a non-JSON body", resp.StatusCode),
		})
		resp.Header.Set("Content-Type", "application/json")
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}
