// Package twiliotest is an in-process fake of Twilio's Messages API for tests
// and benchmarks: it checks each create-message request as strictly as Twilio
// does, records the messages it accepts, and can be told to fail or stall.
package twiliotest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aftercare/aftercare/internal/received"
)

var (
	messagesPath = regexp.MustCompile(`^/2010-04-01/Accounts/([^/]+)/Messages\.json$`)
	e164         = regexp.MustCompile(`^\+[1-9]\d{6,14}$`)
)

// Credentials a fake and the client pointed at it can share; they have the
// shape of real ones.
const (
	AccountSID = "AC0123456789abcdef0123456789abcdef"
	AuthToken  = "0123456789abcdef0123456789abcdef"
)

// Message is one accepted message.
type Message struct {
	SID, To, From, MessagingServiceSID, Body, StatusCallback string
	Received                                                 time.Time
}

// Server is a fake Twilio. It is safe for concurrent use.
type Server struct {
	accountSID, authToken string
	ts                    *httptest.Server
	closed                chan struct{}
	closeOnce             sync.Once

	inbox received.Inbox[Message]

	mu       sync.Mutex
	requests int
	failures []failure
	delay    time.Duration
	stall    time.Duration
}

// failure is one batch of answers queued by Fail.
type failure struct {
	times, status, code int
	message             string
}

// New starts a fake Twilio on a loopback port that accepts accountSID and
// authToken.
func New(accountSID, authToken string) *Server {
	s := &Server{
		accountSID: accountSID,
		authToken:  authToken,
		closed:     make(chan struct{}),
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL returns the base URL to give a client in place of
// https://api.twilio.com, e.g. http://127.0.0.1:port.
func (s *Server) URL() string { return s.ts.URL }

// Close ends any delayed answers and stops the server. It may be called more
// than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ts.Close()
	})
}

// Messages returns a copy of the accepted messages, in the order received.
func (s *Server) Messages() []Message { return s.inbox.All() }

// Len returns how many messages were accepted.
func (s *Server) Len() int { return s.inbox.Len() }

// Wait blocks until at least n messages were accepted or timeout passes. It
// returns the messages accepted so far and whether there were n.
func (s *Server) Wait(n int, timeout time.Duration) ([]Message, bool) {
	return s.inbox.Wait(n, timeout)
}

// Fail makes the next times requests fail with HTTP status. If code is not
// 0 the body is a Twilio JSON error with that code and message; with code 0
// it is the plain text "upstream error", as a proxy might answer. Calls
// queue up: a second Fail takes effect once the first is used up.
func (s *Server) Fail(times, status, code int, message string) {
	if times <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, failure{times: times, status: status, code: code, message: message})
}

// SetDelay makes every request wait d before it is answered; 0 for none. A
// client that gives up first gets no answer.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetStall makes the server take each valid message (it is recorded, as
// Twilio would queue it) and then wait d before answering; 0 for none. A
// client that gives up first never learns that the message went out.
func (s *Server) SetStall(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = d
}

// Requests returns how many requests arrived, accepted or not. The server
// serves only the create-message endpoint, so every request counts as an
// attempt to create a message.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// wait waits d, and reports false if the client or the server went away
// first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closed:
		return false
	}
}

// arrive counts a request and takes the failure queued for it, if any.
func (s *Server) arrive() (delay time.Duration, f failure, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if len(s.failures) > 0 {
		f, fail = s.failures[0], true
		if s.failures[0].times--; s.failures[0].times == 0 {
			s.failures = s.failures[1:]
		}
	}
	return s.delay, f, fail
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	delay, f, fail := s.arrive()
	if delay > 0 && !s.wait(r, delay) {
		return
	}
	if fail {
		if f.code == 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(f.status)
			fmt.Fprint(w, "upstream error")
			return
		}
		writeError(w, f.status, f.code, f.message)
		return
	}

	m := messagesPath.FindStringSubmatch(r.URL.Path)
	if (r.Method != http.MethodPost && r.Method != http.MethodGet) || m == nil {
		writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", r.URL.Path))
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.accountSID || pass != s.authToken || m[1] != s.accountSID {
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if r.Method == http.MethodGet {
		s.list(w, r)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		writeError(w, http.StatusBadRequest, 20001, fmt.Sprintf("Content-Type must be application/x-www-form-urlencoded, not %q", r.Header.Get("Content-Type")))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "The request body is not a valid form: "+err.Error())
		return
	}
	msg := Message{
		To:                  r.PostForm.Get("To"),
		From:                r.PostForm.Get("From"),
		MessagingServiceSID: r.PostForm.Get("MessagingServiceSid"),
		Body:                r.PostForm.Get("Body"),
		StatusCallback:      r.PostForm.Get("StatusCallback"),
	}
	switch {
	case msg.To == "":
		writeError(w, http.StatusBadRequest, 21604, "A 'To' phone number is required.")
	case !e164.MatchString(msg.To):
		writeError(w, http.StatusBadRequest, 21211, fmt.Sprintf("Invalid 'To' Phone Number: %s", msg.To))
	case msg.From == "" && msg.MessagingServiceSID == "":
		writeError(w, http.StatusBadRequest, 21603, "A 'From' phone number or a 'MessagingServiceSid' is required.")
	case msg.From != "" && msg.MessagingServiceSID != "":
		writeError(w, http.StatusBadRequest, 21606, "Set either 'From' or 'MessagingServiceSid', not both.")
	case msg.Body == "":
		writeError(w, http.StatusBadRequest, 21602, "Message body is required.")
	default:
		s.accept(w, r, msg)
	}
}

// accept records msg and answers with its message resource.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, msg Message) {
	msg.SID = newSID()
	msg.Received = time.Now()
	s.inbox.Add(msg)
	s.mu.Lock()
	stall := s.stall
	s.mu.Unlock()
	if stall > 0 && !s.wait(r, stall) {
		return
	}

	writeJSON(w, http.StatusCreated, s.resource(msg))
}

// resource is msg as Twilio's message resource right after creation.
func (s *Server) resource(msg Message) resource {
	uri := fmt.Sprintf("/2010-04-01/Accounts/%s/Messages/%s", s.accountSID, msg.SID)
	date := msg.Received.UTC().Format(time.RFC1123Z)
	return resource{
		SID:                 msg.SID,
		AccountSID:          s.accountSID,
		To:                  msg.To,
		From:                orNull(msg.From),
		MessagingServiceSID: orNull(msg.MessagingServiceSID),
		Body:                msg.Body,
		Status:              "queued",
		NumSegments:         "1",
		NumMedia:            "0",
		Direction:           "outbound-api",
		APIVersion:          "2010-04-01",
		PriceUnit:           "USD",
		DateCreated:         date,
		DateUpdated:         date,
		URI:                 uri + ".json",
		SubresourceURIs: map[string]string{
			"media":    uri + "/Media.json",
			"feedback": uri + "/Feedback.json",
		},
	}
}

// list answers GET Messages.json as Twilio does: the account's messages,
// newest first, filtered by To and From, a page at a time (PageSize,
// default 50, at most 1000; Page and PageToken), with the URIs of the
// pages around it.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, page := 50, 0
	if v := q.Get("PageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, 20001, "PageSize must be between 1 and 1000")
			return
		}
		size = n
	}
	if v := q.Get("Page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || (n > 0 && q.Get("PageToken") != fmt.Sprintf("PASM%d", n*size)) {
			writeError(w, http.StatusBadRequest, 20001, "Page needs the PageToken of the page before")
			return
		}
		page = n
	}
	var match []Message
	all := s.inbox.All()
	for i := len(all) - 1; i >= 0; i-- {
		m := all[i]
		if (q.Get("To") == "" || m.To == q.Get("To")) && (q.Get("From") == "" || m.From == q.Get("From")) {
			match = append(match, m)
		}
	}
	start := min(page*size, len(match))
	end := min(start+size, len(match))
	base := fmt.Sprintf("/2010-04-01/Accounts/%s/Messages.json", s.accountSID)
	filter := url.Values{}
	for _, k := range []string{"To", "From"} {
		if v := q.Get(k); v != "" {
			filter.Set(k, v)
		}
	}
	pageURI := func(n int) string {
		v := url.Values{"PageSize": {strconv.Itoa(size)}, "Page": {strconv.Itoa(n)}}
		for k, vs := range filter {
			v[k] = vs
		}
		if n > 0 {
			v.Set("PageToken", fmt.Sprintf("PASM%d", n*size))
		}
		return base + "?" + v.Encode()
	}
	resp := listPage{Page: page, PageSize: size, Start: start, End: max(end-1, start), URI: pageURI(page), FirstPageURI: pageURI(0),
		Messages: []resource{}}
	for _, m := range match[start:end] {
		resp.Messages = append(resp.Messages, s.resource(m))
	}
	if end < len(match) {
		next := pageURI(page + 1)
		resp.NextPageURI = &next
	}
	if page > 0 {
		prev := pageURI(page - 1)
		resp.PreviousPageURI = &prev
	}
	writeJSON(w, http.StatusOK, resp)
}

// listPage is Twilio's page of message resources.
type listPage struct {
	Messages        []resource `json:"messages"`
	End             int        `json:"end"`
	FirstPageURI    string     `json:"first_page_uri"`
	NextPageURI     *string    `json:"next_page_uri"`
	Page            int        `json:"page"`
	PageSize        int        `json:"page_size"`
	PreviousPageURI *string    `json:"previous_page_uri"`
	Start           int        `json:"start"`
	URI             string     `json:"uri"`
}

// resource is Twilio's message resource as it stands right after creation.
type resource struct {
	SID                 string            `json:"sid"`
	AccountSID          string            `json:"account_sid"`
	To                  string            `json:"to"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	Body                string            `json:"body"`
	Status              string            `json:"status"`
	NumSegments         string            `json:"num_segments"`
	NumMedia            string            `json:"num_media"`
	Direction           string            `json:"direction"`
	APIVersion          string            `json:"api_version"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	DateCreated         string            `json:"date_created"`
	DateUpdated         string            `json:"date_updated"`
	DateSent            *string           `json:"date_sent"`
	URI                 string            `json:"uri"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// newSID returns a message SID: "SM" and 32 lowercase hex digits.
func newSID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "SM" + hex.EncodeToString(b)
}

// writeError answers with Twilio's JSON error body.
func writeError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{
		"code":      code,
		"message":   message,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
		"status":    status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Sign computes X-Twilio-Signature the way Twilio does: HMAC-SHA1, keyed
// with the auth token, over the URL followed by each form field's name and
// value in name order.
func Sign(authToken, url string, form url.Values) string {
	data := url
	for _, k := range slices.Sorted(maps.Keys(form)) {
		data += k + form.Get(k)
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Callback posts a signed status callback for message sid to the
// StatusCallback it was sent with, as Twilio does, with token as its
// I-Twilio-Idempotency-Token (none if empty). It returns the HTTP status.
func (s *Server) Callback(sid, status, errorCode, token string) (int, error) {
	var target string
	for _, m := range s.Messages() {
		if m.SID == sid {
			target = m.StatusCallback
		}
	}
	if target == "" {
		return 0, fmt.Errorf("twiliotest: message %s has no status callback", sid)
	}
	form := url.Values{"MessageSid": {sid}, "MessageStatus": {status}, "AccountSid": {s.accountSID}}
	if errorCode != "" {
		form.Set("ErrorCode", errorCode)
	}
	code, _, err := s.post(target, form, token)
	return code, err
}

// Reply posts a signed incoming message from a patient to the webhook at
// target, as Twilio does. It returns the HTTP status.
func (s *Server) Reply(target, from, body string) (int, error) {
	status, _, err := s.Incoming(target, newSID(), from, body)
	return status, err
}

// Incoming posts a signed incoming message with the MessageSid sid (Twilio
// delivers a message again with the same one) and returns the HTTP status
// and the body of the answer, the TwiML.
func (s *Server) Incoming(target, sid, from, body string) (int, string, error) {
	status, answer, err := s.post(target, url.Values{"From": {from}, "Body": {body}, "MessageSid": {sid}, "AccountSid": {s.accountSID}}, "")
	return status, string(answer), err
}

func (s *Server) post(target string, form url.Values, token string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", Sign(s.authToken, target, form))
	if token != "" {
		req.Header.Set("I-Twilio-Idempotency-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}
