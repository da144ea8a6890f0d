package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/api"
	"github.com/aftercare/aftercare/inbox"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

const (
	token       = "s3cret-token"
	twilioToken = "0123456789abcdef0123456789abcdef"
	publicURL   = "https://care.clinic.example"
)

type testBundle struct {
	url     string
	rdb     *redis.Client
	replies int
}

// setup serves the API over a real scheduler and store on a private Redis.
func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, func(*api.Config) {})
}

// setupWith is setup with edit applied to the API's configuration.
func setupWith(t *testing.T, edit func(*api.Config)) *testBundle {
	t.Helper()
	rdb := redistest.Client(t)
	protocols := fixture.Protocols(t)
	clinic := fixture.AnyHour(t)
	sched := scheduler.New(redisstore.New(rdb), taskqueue.New(rdb), scheduler.Config{Protocols: protocols, Clinic: clinic})
	renderer, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
	if err != nil {
		t.Fatal(err)
	}
	shared, err := protocol.BuiltinRedFlags()
	if err != nil {
		t.Fatal(err)
	}
	box := inbox.New(inbox.Config{Store: redisstore.New(rdb), Bookings: sched, Renderer: renderer, Alerts: taskqueue.New(rdb),
		Clinic: clinic, RedFlags: protocol.RedFlags(protocols, shared)})
	cfg := api.Config{Bookings: sched, Inbox: box, Tokens: []string{token}, TwilioAuthToken: twilioToken, PublicURL: publicURL}
	edit(&cfg)
	srv := httptest.NewServer(api.New(cfg))
	t.Cleanup(srv.Close)
	return &testBundle{url: srv.URL, rdb: rdb}
}

func validBody() map[string]any {
	return map[string]any{
		"id":               "bk_1001",
		"treatment":        "botox",
		"appointment_at":   time.Now().Add(72 * time.Hour).Format(time.RFC3339),
		"duration_minutes": 30,
		"patient": map[string]any{
			"first_name": "Ana", "phone": "+15555550123", "email": "ana@example.com",
			"timezone": "America/New_York", "locale": "en", "sms_opt_in": true, "email_opt_in": true,
		},
	}
}

func encode(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (tb *testBundle) do(t *testing.T, method, path, contentType, auth, body string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, tb.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp.Header
}

// TestBadRequests sends one bad request per case and checks the status, the
// problem document, the field named, and that Redis holds nothing at all
// afterwards: no booking record and no task.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	with := func(change func(b map[string]any)) string {
		b := validBody()
		change(b)
		return encode(t, b)
	}
	patient := func(key string, v any) string {
		return with(func(b map[string]any) { b["patient"].(map[string]any)[key] = v })
	}
	bearer := "Bearer " + token
	tests := []struct {
		name        string
		contentType string
		auth        string
		body        string
		status      int
		field       string
	}{
		{"no token", "application/json", "", encode(t, validBody()), 401, ""},
		{"wrong token", "application/json", "Bearer nope", encode(t, validBody()), 401, ""},
		{"basic auth", "application/json", "Basic " + token, encode(t, validBody()), 401, ""},
		{"form body", "application/x-www-form-urlencoded", bearer, "id=bk_1", 415, ""},
		{"malformed JSON", "application/json", bearer, `{"id": "bk_1",`, 400, ""},
		{"not an object", "application/json", bearer, `[1,2]`, 422, "(body)"},
		{"empty body", "application/json", bearer, ``, 400, ""},
		{"two objects", "application/json", bearer, encode(t, validBody()) + `{}`, 400, ""},
		{"too large", "application/json", bearer, `{"id":"` + strings.Repeat("x", api.MaxBody) + `"}`, 413, ""},
		{"unknown field", "application/json", bearer, with(func(b map[string]any) { b["nickname"] = "A" }), 422, "nickname"},
		{"wrong type", "application/json", bearer, with(func(b map[string]any) { b["duration_minutes"] = "thirty" }), 422, "duration_minutes"},
		{"bad time", "application/json", bearer, with(func(b map[string]any) { b["appointment_at"] = "tomorrow 3pm" }), 422, "appointment_at"},
		{"no time", "application/json", bearer, with(func(b map[string]any) { delete(b, "appointment_at") }), 422, "appointment_at"},
		{"bad id", "application/json", bearer, with(func(b map[string]any) { b["id"] = "bk/1" }), 422, "id"},
		{"unknown treatment", "application/json", bearer, with(func(b map[string]any) { b["treatment"] = "laser" }), 422, "treatment"},
		{"bad phone", "application/json", bearer, patient("phone", "555-0123"), 422, "patient.phone"},
		{"bad email", "application/json", bearer, patient("email", "ana.example.com"), 422, "patient.email"},
		{"bad zone", "application/json", bearer, patient("timezone", "EST5"), 422, "patient.timezone"},
		{"bad locale", "application/json", bearer, patient("locale", "de"), 422, "patient.locale"},
		{"opt-in not a bool", "application/json", bearer, patient("sms_opt_in", "yes"), 422, "patient.sms_opt_in"},
		{"email twice", "application/json", bearer, strings.Replace(encode(t, validBody()), `"email":"ana@example.com"`,
			`"email":"ana@example.com","email":"eve@example.com"`, 1), 422, "patient.email"},
		{"email in two cases", "application/json", bearer, strings.Replace(encode(t, validBody()), `"email":"ana@example.com"`,
			`"email":"ana@example.com","EMAIL":"eve@example.com"`, 1), 422, "patient.EMAIL"},
		{"id twice", "application/json", bearer, strings.Replace(encode(t, validBody()), `"id":"bk_1001"`, `"id":"bk_1001","Id":"bk_2"`, 1), 422, "Id"},
		{"year 9999", "application/json", bearer, with(func(b map[string]any) { b["appointment_at"] = "9999-12-31T10:00:00Z" }), 422, "appointment_at"},
		{"line break in the name", "application/json", bearer, patient("first_name", "Ana\r\nBcc: x"), 422, "patient.first_name"},
		{"no channel", "application/json", bearer, with(func(b map[string]any) {
			p := b["patient"].(map[string]any)
			p["sms_opt_in"], p["email_opt_in"] = false, false
		}), 422, "patient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, header := tb.do(t, "POST", "/v1/bookings", tt.contentType, tt.auth, tt.body)
			if status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", status, tt.status, body)
			}
			if ct := header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var p problem
			if err := json.Unmarshal(body, &p); err != nil || p.Status != status || p.Title == "" || p.Detail == "" || p.Type == "" {
				t.Fatalf("problem document = %s (%v)", body, err)
			}
			if tt.field != "" {
				if len(p.Errors) == 0 || p.Errors[0].Field != tt.field || p.Errors[0].Message == "" {
					t.Errorf("errors = %+v, want field %q first", p.Errors, tt.field)
				}
			}
		})
	}
	if n := tb.rdb.DBSize(t.Context()).Val(); n != 0 {
		keys := tb.rdb.Keys(t.Context(), "*").Val()
		t.Errorf("Redis holds %d keys after bad requests only: %v", n, keys)
	}
}

// TestEveryFieldAtOnce: fields of the wrong type or format are listed with
// every other invalid field, in one answer.
func TestEveryFieldAtOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b := validBody()
	b["duration_minutes"] = "thirty"
	b["appointment_at"] = "tomorrow at 3"
	p := b["patient"].(map[string]any)
	p["sms_opt_in"], p["phone"], p["timezone"] = "yes", "555-0123", "Mars/Olympus"
	status, body, _ := tb.do(t, "POST", "/v1/bookings", "application/json", "Bearer "+token, encode(t, b))
	var got problem
	if err := json.Unmarshal(body, &got); err != nil || status != http.StatusUnprocessableEntity {
		t.Fatalf("POST = %d: %s", status, body)
	}
	var fields []string
	for _, e := range got.Errors {
		fields = append(fields, e.Field)
	}
	for _, want := range []string{"duration_minutes", "appointment_at", "patient.sms_opt_in", "patient.phone", "patient.timezone"} {
		if !slices.Contains(fields, want) {
			t.Errorf("errors %v lack %s", fields, want)
		}
	}
}

// TestMethodsAndSchemes: a known path with a method it does not answer is
// 405 with Allow; the bearer scheme is matched whatever its case.
func TestMethodsAndSchemes(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	status, body, header := tb.do(t, "PATCH", "/v1/bookings/bk_1", "application/json", "Bearer "+token, "{}")
	if status != http.StatusMethodNotAllowed || header.Get("Allow") != "GET, PUT, DELETE" || !strings.Contains(string(body), "not PATCH") {
		t.Errorf("PATCH = %d, Allow %q: %s", status, header.Get("Allow"), body)
	}
	if status, _, _ := tb.do(t, "GET", "/v1/nothing", "", "Bearer "+token, ""); status != http.StatusNotFound {
		t.Errorf("unknown path = %d", status)
	}
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		if status, body, _ := tb.do(t, "GET", "/v1/bookings/bk_none", "", scheme+" "+token, ""); status != http.StatusNotFound {
			t.Errorf("%s scheme = %d: %s", scheme, status, body)
		}
	}
}

func TestCreateGetRepeat(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	bearer := "Bearer " + token
	body := encode(t, validBody())

	status, data, header := tb.do(t, "POST", "/v1/bookings", "application/json", bearer, body)
	if status != 201 || header.Get("Location") != "/v1/bookings/bk_1001" {
		t.Fatalf("create = %d %s", status, data)
	}
	var tl struct {
		ID       string `json:"id"`
		Version  int    `json:"version"`
		Status   string `json:"status"`
		Messages []struct {
			Step, Channel, Status string
		} `json:"messages"`
	}
	if err := json.Unmarshal(data, &tl); err != nil || tl.ID != "bk_1001" || tl.Version != 1 || tl.Status != "scheduled" || len(tl.Messages) != 11 {
		t.Fatalf("timeline = %s", data)
	}
	if bytes.Contains(data, []byte("5555550123")) || bytes.Contains(data, []byte("ana@")) {
		t.Error("timeline shows patient contact details")
	}
	keys := tb.rdb.DBSize(t.Context()).Val()

	status, again, _ := tb.do(t, "POST", "/v1/bookings", "application/json", bearer, body)
	if status != 200 || !bytes.Equal(again, data) {
		t.Errorf("identical re-POST = %d %s, want 200 and the same timeline", status, again)
	}
	if n := tb.rdb.DBSize(t.Context()).Val(); n != keys {
		t.Errorf("identical re-POST changed Redis: %d keys, was %d", n, keys)
	}

	changed := validBody()
	changed["duration_minutes"] = 45
	status, data, _ = tb.do(t, "POST", "/v1/bookings", "application/json", bearer, encode(t, changed))
	var p problem
	_ = json.Unmarshal(data, &p)
	if status != 409 || !strings.Contains(p.Detail, "PUT") {
		t.Errorf("conflicting re-POST = %d %s, want 409 saying to use PUT", status, data)
	}

	if status, data, _ = tb.do(t, "GET", "/v1/bookings/bk_1001", "", bearer, ""); status != 200 {
		t.Errorf("GET = %d %s", status, data)
	}
	if status, data, _ = tb.do(t, "GET", "/v1/bookings/bk_404", "", bearer, ""); status != 404 {
		t.Errorf("GET unknown = %d %s", status, data)
	}
	if status, _, _ = tb.do(t, "GET", "/v1/bookings/bk_1001", "", "", ""); status != 401 {
		t.Errorf("GET without token = %d", status)
	}
	if status, _, _ = tb.do(t, "GET", "/healthz", "", "", ""); status != 200 {
		t.Errorf("healthz = %d", status)
	}
	if status, _, _ = tb.do(t, "DELETE", "/nowhere", "", bearer, ""); status != 404 {
		t.Errorf("unknown route = %d", status)
	}
}

// TestLifecycleErrors covers the 4xx answers of PUT, DELETE and treated.
func TestLifecycleErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	bearer := "Bearer " + token
	if status, data, _ := tb.do(t, "POST", "/v1/bookings", "application/json", bearer, encode(t, validBody())); status != 201 {
		t.Fatalf("create = %d %s", status, data)
	}
	other := validBody()
	other["id"] = "bk_other"
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"PUT id differs from URL", "PUT", "/v1/bookings/bk_1001", encode(t, other), 422, "id"},
		{"PUT unknown booking", "PUT", "/v1/bookings/bk_other", encode(t, other), 404, ""},
		{"PUT bad body", "PUT", "/v1/bookings/bk_1001", `{"id":`, 400, ""},
		{"DELETE bad notify", "DELETE", "/v1/bookings/bk_1001?notify=yes", "", 400, ""},
		{"DELETE unknown", "DELETE", "/v1/bookings/bk_nobody", "", 404, ""},
		{"treated without time", "POST", "/v1/bookings/bk_1001/treated", `{}`, 422, "treated_at"},
		{"treated bad time", "POST", "/v1/bookings/bk_1001/treated", `{"treated_at":"3pm"}`, 422, "treated_at"},
		{"treated in the future", "POST", "/v1/bookings/bk_1001/treated", encode(t, map[string]string{"treated_at": time.Now().Add(time.Hour).Format(time.RFC3339)}), 422, "treated_at"},
		{"treated unknown field", "POST", "/v1/bookings/bk_1001/treated", `{"treated":"x"}`, 422, "treated"},
		{"treated unknown booking", "POST", "/v1/bookings/bk_nobody/treated", `{"treated_at":"2026-12-01T15:00:00Z"}`, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := tb.do(t, tt.method, tt.path, "application/json", bearer, tt.body)
			if status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", status, tt.status, body)
			}
			var p problem
			if err := json.Unmarshal(body, &p); err != nil || p.Status != status || p.Detail == "" {
				t.Fatalf("problem document = %s", body)
			}
			if tt.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.field) {
				t.Errorf("errors = %+v, want field %q", p.Errors, tt.field)
			}
		})
	}

	// A cancelled booking can be neither rescheduled nor treated.
	if status, body, _ := tb.do(t, "DELETE", "/v1/bookings/bk_1001", "", bearer, ""); status != 200 || !bytes.Contains(body, []byte(`"status": "cancelled"`)) {
		t.Fatalf("DELETE = %d %s", status, body)
	}
	if status, _, _ := tb.do(t, "DELETE", "/v1/bookings/bk_1001", "", bearer, ""); status != 200 {
		t.Errorf("second DELETE = %d, want 200", status)
	}
	changed := validBody()
	changed["duration_minutes"] = 45
	if status, body, _ := tb.do(t, "PUT", "/v1/bookings/bk_1001", "application/json", bearer, encode(t, changed)); status != 409 {
		t.Errorf("PUT of a cancelled booking = %d %s", status, body)
	}
	now := encode(t, map[string]string{"treated_at": time.Now().Format(time.RFC3339)})
	if status, body, _ := tb.do(t, "POST", "/v1/bookings/bk_1001/treated", "application/json", bearer, now); status != 409 {
		t.Errorf("treated on a cancelled booking = %d %s", status, body)
	}
	if status, body, header := tb.do(t, "GET", "/openapi.yaml", "", "", ""); status != 200 || !bytes.HasPrefix(body, []byte("openapi: 3.1")) || header.Get("Content-Type") != "application/yaml" {
		t.Errorf("GET /openapi.yaml = %d %q", status, header.Get("Content-Type"))
	}
}

func (tb *testBundle) reply(t *testing.T, body, signature string) (int, string) {
	t.Helper()
	tb.replies++ // each text its own Twilio message
	form := url.Values{"From": {"+1 555 555 0123"}, "Body": {body}, "MessageSid": {fmt.Sprintf("SMin%d", tb.replies)}}
	if signature == "sign" {
		signature = twiliotest.Sign(twilioToken, publicURL+"/webhooks/twilio/inbound", form)
	}
	req, _ := http.NewRequest("POST", tb.url+"/webhooks/twilio/inbound", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if signature != "" {
		req.Header.Set("X-Twilio-Signature", signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func (tb *testBundle) timelineOf(t *testing.T, id string) map[string]any {
	t.Helper()
	status, data, _ := tb.do(t, "GET", "/v1/bookings/"+id, "", "Bearer "+token, "")
	if status != 200 {
		t.Fatalf("GET = %d %s", status, data)
	}
	var tl map[string]any
	if err := json.Unmarshal(data, &tl); err != nil {
		t.Fatal(err)
	}
	return tl
}

func statuses(tl map[string]any, channel string) []string {
	var out []string
	for _, m := range tl["messages"].([]any) {
		m := m.(map[string]any)
		if m["channel"] == channel {
			out = append(out, m["status"].(string))
		}
	}
	return out
}

// TestPatientReplies drives the inbound webhook with signed and unsigned
// requests and checks what each keyword does to the booking.
func TestPatientReplies(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	if status, data, _ := tb.do(t, "POST", "/v1/bookings", "application/json", "Bearer "+token, encode(t, validBody())); status != 201 {
		t.Fatalf("create = %d %s", status, data)
	}

	for _, sig := range []string{"", "bm90IGEgc2lnbmF0dXJl"} {
		if status, _ := tb.reply(t, "STOP", sig); status != 403 {
			t.Errorf("STOP with signature %q = %d, want 403", sig, status)
		}
	}
	if got := statuses(tb.timelineOf(t, "bk_1001"), "sms"); slices.Contains(got, "suppressed") {
		t.Fatalf("an unsigned STOP changed the booking: %v", got)
	}

	// The consent SMS went out (no worker runs here): YES answers it.
	tb.rdb.HSet(t.Context(), redisstore.Key("bk_1001"), "m:consent:sms", "sent", "p:consent:sms", "SMconsent", "d:consent:sms", "sha256:abc")
	status, body := tb.reply(t, "help", "sign")
	if status != 200 || !strings.Contains(body, "<Message>Example Aesthetics:") || !strings.Contains(body, "Reply STOP to opt out") {
		t.Errorf("HELP = %d %s", status, body)
	}
	if _, body := tb.reply(t, "Yes!", "sign"); body != `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Response></Response>" {
		t.Errorf("YES answered %q, want an empty TwiML response", body)
	}
	tb.reply(t, "My forehead feels a bit tight, is that normal?", "sign")
	tl := tb.timelineOf(t, "bk_1001")
	ack, _ := tl["consent_acknowledgement"].(map[string]any)
	if tl["consent_acknowledged_at"] == nil || ack["method"] != "sms_reply" || ack["provider_id"] != "SMconsent" || ack["digest"] != "sha256:abc" {
		t.Errorf("YES recorded the acknowledgement %v, want the consent SMS it answers", ack)
	}
	r, _ := tl["replies"].([]any)
	if len(r) != 3 {
		t.Fatalf("replies = %v, want HELP, YES and the question", tl["replies"])
	}
	item := r[2].(map[string]any)["inbox_id"].(string)
	if status, data, _ := tb.do(t, "GET", "/v1/inbox/"+item, "", "Bearer "+token, ""); status != 200 || !strings.Contains(string(data), "forehead") {
		t.Errorf("GET /v1/inbox/%s = %d %s", item, status, data)
	}

	tasksOn := func(ch string) int { // in any send queue, clinical or routine
		n := 0
		for _, q := range aftercare.SendQueues() {
			n += len(tb.rdb.Keys(t.Context(), "asynq:{"+q+"}:t:*:"+ch).Val())
		}
		return n
	}
	smsTasks := func() int { return tasksOn("sms") }
	emailTasks := tasksOn("email")
	if smsTasks() == 0 {
		t.Fatal("no SMS tasks before STOP")
	}
	if status, _ := tb.reply(t, "Stop please", "sign"); status != 200 {
		t.Fatalf("STOP = %d", status)
	}
	tl = tb.timelineOf(t, "bk_1001")
	for _, st := range statuses(tl, "sms")[1:] { // the consent went out before
		if st != "suppressed" {
			t.Errorf("SMS statuses after STOP: %v, want all but the sent consent suppressed", statuses(tl, "sms"))
			break
		}
	}
	if slices.Contains(statuses(tl, "email"), "suppressed") {
		t.Errorf("email statuses after STOP: %v; email is not affected", statuses(tl, "email"))
	}
	if n := smsTasks(); n != 1 {
		t.Errorf("%d SMS tasks left in Redis after STOP, want the consent's alone (it finds its message sent)", n)
	}
	// Email goes on, and carries the clinical steps the texts no longer can
	// (upright, lie_down, day3).
	if n := tasksOn("email"); n != emailTasks+3 {
		t.Errorf("email tasks %d, were %d: want the three clinical steps' fallbacks more", n, emailTasks)
	}
	store := redisstore.New(tb.rdb)
	if out, _ := store.OptedOut(t.Context(), "+15555550123"); !out {
		t.Error("the number is not recorded as opted out")
	}
	tb.reply(t, "START", "sign")
	if out, _ := store.OptedOut(t.Context(), "+15555550123"); out {
		t.Error("START did not opt the number back in")
	}
	if keys := tb.rdb.Keys(t.Context(), "*5555550123*").Val(); len(keys) != 0 {
		t.Errorf("a Redis key names the phone number: %v", keys)
	}
}

// TestUnsignedWebhooks: without a Twilio auth token, a development service
// takes an unsigned text (for trying it locally); with one, never.
func TestUnsignedWebhooks(t *testing.T) {
	t.Parallel()
	dev := setupWith(t, func(c *api.Config) { c.TwilioAuthToken, c.PublicURL, c.UnsignedWebhooks = "", "", true })
	if status, body := dev.reply(t, "help", ""); status != 200 || !strings.Contains(body, "Reply STOP") {
		t.Errorf("unsigned HELP in development = %d %s", status, body)
	}
	signed := setupWith(t, func(c *api.Config) { c.UnsignedWebhooks = true })
	if status, _ := signed.reply(t, "help", ""); status != 403 {
		t.Errorf("unsigned HELP with an auth token set = %d, want 403", status)
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()
	ready := errors.New("shutting down")
	srv := httptest.NewServer(api.Probes(func(context.Context) error { return ready }))
	t.Cleanup(srv.Close)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
