package twiliotest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aftercare/aftercare/internal/twiliotest"
)

const (
	accountSID = "AC00000000000000000000000000000001"
	authToken  = "0123456789abcdef0123456789abcdef"
)

var messagePath = "/2010-04-01/Accounts/" + accountSID + "/Messages.json"

// request describes one call to the fake; empty fields take valid defaults.
type request struct {
	method, path, contentType string
	user, pass                string
	form                      url.Values
}

// do sends req to fake and returns the status and body.
func do(t *testing.T, fake *twiliotest.Server, req request) (int, []byte) {
	t.Helper()
	status, body, err := send(fake, req)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// send is do for goroutines other than the test's own.
func send(fake *twiliotest.Server, req request) (int, []byte, error) {
	if req.method == "" {
		req.method = http.MethodPost
	}
	if req.path == "" {
		req.path = messagePath
	}
	if req.contentType == "" {
		req.contentType = "application/x-www-form-urlencoded"
	}
	if req.user == "" && req.pass == "" {
		req.user, req.pass = accountSID, authToken
	}
	if req.form == nil {
		req.form = validForm()
	}
	r, err := http.NewRequest(req.method, fake.URL()+req.path, strings.NewReader(req.form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	r.Header.Set("Content-Type", req.contentType)
	r.SetBasicAuth(req.user, req.pass)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func validForm() url.Values {
	return url.Values{"To": {"+15555550123"}, "From": {"+15005550006"}, "Body": {"hello"}}
}

// with returns the valid form with key set to value, or removed if value
// is empty.
func with(key, value string) url.Values {
	f := validForm()
	if value == "" {
		f.Del(key)
	} else {
		f.Set(key, value)
	}
	return f
}

func newFake(t *testing.T) *twiliotest.Server {
	t.Helper()
	fake := twiliotest.New(accountSID, authToken)
	t.Cleanup(fake.Close)
	return fake
}

func TestRejects(t *testing.T) {
	t.Parallel()
	form := validForm()
	form.Set("MessagingServiceSid", "MG00000000000000000000000000000002")
	tests := []struct {
		name     string
		req      request
		status   int
		wantCode int
	}{
		{"wrong token", request{user: accountSID, pass: "nope"}, 401, 20003},
		{"empty account SID", request{user: "", pass: authToken}, 401, 20003},
		{"other account in path", request{path: "/2010-04-01/Accounts/AC99/Messages.json"}, 401, 20003},
		{"wrong path", request{path: "/2010-04-01/Accounts/" + accountSID + "/Calls.json"}, 404, 20404},
		{"wrong method", request{method: http.MethodPut}, 404, 20404},
		{"JSON body", request{contentType: "application/json"}, 400, 20001},
		{"missing To", request{form: with("To", "")}, 400, 21604},
		{"To without plus", request{form: with("To", "15555550123")}, 400, 21211},
		{"To too short", request{form: with("To", "+123")}, 400, 21211},
		{"To with spaces", request{form: with("To", "+1 555 555 0123")}, 400, 21211},
		{"no sender", request{form: with("From", "")}, 400, 21603},
		{"two senders", request{form: form}, 400, 21606},
		{"empty body", request{form: with("Body", "")}, 400, 21602},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			status, body := do(t, fake, tt.req)
			if status != tt.status {
				t.Errorf("status = %d, want %d (body %s)", status, tt.status, body)
			}
			var e struct {
				Code     int    `json:"code"`
				Message  string `json:"message"`
				MoreInfo string `json:"more_info"`
				Status   int    `json:"status"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %s is not JSON: %v", body, err)
			}
			if e.Code != tt.wantCode || e.Status != tt.status || e.Message == "" || e.MoreInfo == "" {
				t.Errorf("error body = %+v, want code %d and status %d", e, tt.wantCode, tt.status)
			}
			if n := len(fake.Messages()); n != 0 {
				t.Errorf("fake accepted %d messages, want 0", n)
			}
			if n := fake.Requests(); n != 1 {
				t.Errorf("Requests() = %d, want 1", n)
			}
		})
	}
}

func TestAccepts(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	form := validForm()
	form.Set("StatusCallback", "https://aftercare.example/status")

	status, body := do(t, fake, request{form: form})
	if status != http.StatusCreated {
		t.Fatalf("status = %d, want 201 (body %s)", status, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s is not JSON: %v", body, err)
	}
	sid, _ := got["sid"].(string)
	if !regexp.MustCompile(`^SM[0-9a-f]{32}$`).MatchString(sid) {
		t.Errorf("sid = %q, want SM and 32 hex digits", sid)
	}
	for field, want := range map[string]any{
		"account_sid":           accountSID,
		"to":                    "+15555550123",
		"from":                  "+15005550006",
		"messaging_service_sid": nil,
		"body":                  "hello",
		"status":                "queued",
		"num_segments":          "1",
		"direction":             "outbound-api",
		"api_version":           "2010-04-01",
		"uri":                   "/2010-04-01/Accounts/" + accountSID + "/Messages/" + sid + ".json",
	} {
		if got[field] != want {
			t.Errorf("%s = %v, want %v", field, got[field], want)
		}
	}
	if _, err := time.Parse(time.RFC1123Z, got["date_created"].(string)); err != nil {
		t.Errorf("date_created: %v", err)
	}

	msgs := fake.Messages()
	if len(msgs) != 1 {
		t.Fatalf("Messages() has %d, want 1", len(msgs))
	}
	m := msgs[0]
	if m.SID != sid || m.To != "+15555550123" || m.From != "+15005550006" || m.Body != "hello" ||
		m.StatusCallback != "https://aftercare.example/status" || m.MessagingServiceSID != "" || m.Received.IsZero() {
		t.Errorf("Messages()[0] = %+v", m)
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.Fail(1, http.StatusTooManyRequests, 20429, "Too Many Requests")
	fake.Fail(1, http.StatusBadGateway, 0, "")

	// Queued failures fire even for requests that would be refused anyway.
	status, body := do(t, fake, request{pass: "wrong", user: accountSID})
	if status != http.StatusTooManyRequests || !strings.Contains(string(body), `"code":20429`) {
		t.Errorf("first answer = %d %s, want 429 with code 20429", status, body)
	}
	status, body = do(t, fake, request{})
	if status != http.StatusBadGateway || string(body) != "upstream error" {
		t.Errorf("second answer = %d %q, want 502 \"upstream error\"", status, body)
	}
	if status, body = do(t, fake, request{}); status != http.StatusCreated {
		t.Errorf("third answer = %d %s, want 201", status, body)
	}
	if n := fake.Requests(); n != 3 {
		t.Errorf("Requests() = %d, want 3", n)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.SetDelay(20 * time.Millisecond)
	const n = 10
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if status, body, err := send(fake, request{}); err != nil || status != http.StatusCreated {
				t.Errorf("send = %d %s %v, want 201", status, body, err)
			}
		})
	}

	msgs, ok := fake.Wait(n, time.Minute)
	if !ok || len(msgs) != n {
		t.Errorf("Wait(%d) = %d messages, %v", n, len(msgs), ok)
	}
	wg.Wait()
	if msgs, ok := fake.Wait(n+1, 50*time.Millisecond); ok || len(msgs) != n {
		t.Errorf("Wait(%d) after timeout = %d messages, %v; want %d, false", n+1, len(msgs), ok, n)
	}
}
