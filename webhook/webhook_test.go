package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/webhook"
)

const (
	secret  = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	rotated = "whsec_ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

// TestSignatureVerifies: the reference library of the specification
// verifies what Sign makes, under either secret while one is rotated, and
// refuses an altered body.
func TestSignatureVerifies(t *testing.T) {
	body := []byte(`{"type":"message.sent","timestamp":"2026-12-01T15:00:00Z","data":{"booking_id":"bk_1","sequence":3}}`)
	at := time.Now()
	header := http.Header{}
	header.Set("webhook-id", "ev_bk_1_x_3")
	header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	header.Set("webhook-signature", webhook.Sign([]string{secret, rotated}, "ev_bk_1_x_3", at, body))
	for _, s := range []string{secret, rotated} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, header); err != nil {
			t.Errorf("verify under %s…: %v", s[:10], err)
		}
		if err := wh.Verify(append([]byte(nil), append(body[:len(body)-1], ',', '}')...), header); err == nil {
			t.Error("an altered body verified")
		}
	}
}

// state is an in-memory Endpoints.
type state struct {
	mu  sync.Mutex
	off map[string]string
}

func (s *state) EndpointDisabled(_ context.Context, name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, off := s.off[name]
	return off, nil
}

func (s *state) DisableEndpoint(_ context.Context, name, reason string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off == nil {
		s.off = map[string]string{}
	}
	s.off[name] = reason
	return nil
}

// TestSenderAnswers: what each answer of a receiver makes of a delivery.
func TestSenderAnswers(t *testing.T) {
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error, st *state)
	}{
		{"2xx delivers", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) },
			func(t *testing.T, err error, _ *state) {
				if err != nil {
					t.Errorf("err = %v, want delivered", err)
				}
			}},
		{"500 is tried again", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
			func(t *testing.T, err error, _ *state) {
				if err == nil || errors.Is(err, aftercare.ErrFinal) {
					t.Errorf("err = %v, want one to try again", err)
				}
			}},
		{"a redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, func(t *testing.T, err error, _ *state) {
			if err == nil || !strings.Contains(err.Error(), "302") {
				t.Errorf("err = %v, want the 302 as a failure", err)
			}
		}},
		{"429 with Retry-After waits", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		}, func(t *testing.T, err error, _ *state) {
			ra, ok := errors.AsType[*aftercare.RetryAfter](err)
			if !ok || !ra.At.Equal(now.Add(2*time.Minute)) {
				t.Errorf("err = %v, want again after 2 minutes", err)
			}
		}},
		{"503 with an HTTP date waits", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", now.Add(time.Hour).Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		}, func(t *testing.T, err error, _ *state) {
			ra, ok := errors.AsType[*aftercare.RetryAfter](err)
			if !ok || !ra.At.Equal(now.Add(time.Hour)) {
				t.Errorf("err = %v, want again after an hour", err)
			}
		}},
		{"410 disables the endpoint", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) },
			func(t *testing.T, err error, st *state) {
				if d, ok := errors.AsType[*aftercare.Deferred](err); !ok || !d.Until.Equal(now.Add(5*time.Minute)) {
					t.Errorf("err = %v, want the delivery parked for 5 minutes", err)
				}
				if off, _ := st.EndpointDisabled(context.Background(), "crm"); !off {
					t.Error("the endpoint is still on after a 410")
				}
			}},
		// No handler: the receiver answers only once the sender has given up.
		{"a receiver too slow is tried again", nil, func(t *testing.T, err error, _ *state) {
			if err == nil || errors.Is(err, aftercare.ErrFinal) || strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("err = %v, want a timeout to try again, naming no URL", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			headers := make(chan http.Header, 1)
			gaveUp := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				headers <- r.Header.Clone()
				if c.handler == nil {
					<-gaveUp
					return
				}
				c.handler(w, r)
			}))
			defer srv.Close()
			defer close(gaveUp) // before Close, which waits for the handler
			st := &state{}
			client := srv.Client()
			client.Timeout = 300 * time.Millisecond
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			s := webhook.NewSender(webhook.SenderConfig{
				Endpoints: []webhook.Endpoint{{Name: "crm", URL: srv.URL + "/hook?token=abc", Secrets: []string{secret}}},
				State:     st, Client: client, Now: func() time.Time { return now },
			})
			err := s.Handle(context.Background(), aftercare.Delivery{Endpoint: "crm", EventID: "ev_1", Body: []byte(`{}`)}, aftercare.Run{Attempt: 1})
			c.check(t, err, st)
			got := <-headers
			if got.Get("webhook-id") != "ev_1" || !strings.HasPrefix(got.Get("webhook-signature"), "v1,") {
				t.Errorf("headers %v, want webhook-id and a v1 signature", got)
			}
		})
	}
}

// TestDisabledEndpointIsNotCalled: while an endpoint is off, its
// deliveries wait, without a call and without using up their retries.
func TestDisabledEndpointIsNotCalled(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }))
	defer srv.Close()
	st := &state{off: map[string]string{"crm": "410"}}
	s := webhook.NewSender(webhook.SenderConfig{Endpoints: []webhook.Endpoint{{Name: "crm", URL: srv.URL, Secrets: []string{secret}}}, State: st})
	err := s.Handle(context.Background(), aftercare.Delivery{Endpoint: "crm", EventID: "ev_1", Body: []byte(`{}`)}, aftercare.Run{Attempt: 1})
	if _, parked := errors.AsType[*aftercare.Deferred](err); !parked || calls != 0 {
		t.Errorf("err = %v after %d calls, want parked and none", err, calls)
	}
}

// TestLoadNamesTheProblem: each bad endpoint setting is named with its fix.
func TestLoadNamesTheProblem(t *testing.T) {
	cases := []struct {
		s    webhook.Settings
		want string
	}{
		{webhook.Settings{URL: "http://crm.clinic.example/hook", Secrets: []string{secret}, Production: true}, "must be https:// in production"},
		{webhook.Settings{URL: "https://crm.clinic.example/hook"}, "secret: required"},
		{webhook.Settings{URL: "https://crm.clinic.example/hook", Secrets: []string{"abc"}}, `must start with "whsec_"`},
		{webhook.Settings{URL: "https://crm.clinic.example/hook", Secrets: []string{"whsec_YWJj"}}, "use 24 to 64"},
		{webhook.Settings{URL: "crm.clinic.example", Secrets: []string{secret}}, "must be an absolute http(s) URL"},
		{webhook.Settings{Secrets: []string{secret}}, "a secret without a URL"},
	}
	for _, c := range cases {
		_, err := webhook.Load(c.s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%+v) = %v, want %q", c.s, err, c.want)
		}
	}
	eps, err := webhook.Load(webhook.Settings{URL: "http://127.0.0.1:9000/hook", Secrets: []string{secret, rotated}, Production: true})
	if err != nil || len(eps) != 1 || len(eps[0].Secrets) != 2 {
		t.Errorf("loopback in production = %+v, %v; want one endpoint with both secrets", eps, err)
	}
	if eps, err := webhook.Load(webhook.Settings{}); err != nil || len(eps) != 0 {
		t.Errorf("no settings = %v, %v; want no endpoints", eps, err)
	}
}
