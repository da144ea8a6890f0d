package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare/internal/smtptest"
)

// Edge cases of delivery, end to end: the fallback of the clinical SMS-only
// steps to email, quiet hours that hold texts and not emails, a resend on
// purpose through the API, and an address in any script kept out of every
// place but the (encrypted) booking record.

// event is an entry of a booking's audit trail as GET shows it; the shared
// timeline type leaves out who did it and what kind of entry it is.
type event struct {
	Kind    string `json:"kind"`
	Step    string `json:"step"`
	Channel string `json:"channel"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail"`
	By      string `json:"by"`
}

// history returns booking id's audit trail.
func (tb *testBundle) history(t *testing.T, id string) []event {
	t.Helper()
	status, data := tb.request(t, "GET", "/v1/bookings/"+id, nil)
	if status != 200 {
		t.Fatalf("GET %s = %d %s", id, status, data)
	}
	var tl struct {
		History []event `json:"history"`
	}
	if err := json.Unmarshal(data, &tl); err != nil {
		t.Fatal(err)
	}
	return tl.History
}

// emailWithID returns the emails the SMTP server took whose Message-ID is
// that of task id (see smtp.MessageID): "bk:v1:upright:email" is
// <bk.v1.upright.email@clinic.example>.
func emailWithID(t *testing.T, mail *smtptest.Server, taskID string) []smtptest.Message {
	t.Helper()
	want := "<" + strings.ReplaceAll(taskID, ":", ".") + "@clinic.example>"
	var out []smtptest.Message
	for _, m := range mail.Messages() {
		h, err := m.Header()
		if err != nil {
			t.Fatal(err)
		}
		if h.Get("Message-Id") == want {
			out = append(out, m)
		}
	}
	return out
}

// emailOnly turns a booking body into one for a patient who opted into
// email only and gave no phone number.
func emailOnly(body map[string]any) map[string]any {
	p := body["patient"].(map[string]any)
	delete(p, "phone")
	p["sms_opt_in"] = false
	return body
}

// The botox steps that go by SMS alone, with email as their fallback.
var smsOnlySteps = []string{"upright", "lie_down", "day3"}

// TestFallbackEmailOnlyPatient: a patient who can only be emailed still gets
// the clinical SMS-only steps, planned by email from the start; the upright
// email goes at the end of treatment, once.
func TestFallbackEmailOnlyPatient(t *testing.T) {
	t.Parallel()
	tb := setup(t)

	// The treatment ends (duration 0) two whole seconds from now.
	end := time.Now().Truncate(time.Second).Add(2 * time.Second)
	tl := tb.mustRequest(t, "POST", "/v1/bookings", emailOnly(bookingBody("bk_fo", end)), 201)
	for _, step := range smsOnlySteps {
		if st, _ := tl.status(step, "sms"); st != "absent" {
			t.Errorf("%s/sms = %s for a patient without texts, want none", step, st)
		}
		if st, _ := tl.status(step, "email"); st != "scheduled" {
			t.Errorf("%s/email = %s, want scheduled", step, st)
		}
	}
	// At the end of treatment (or at once, if a slow machine booked after it).
	if got := tl.sendAt("upright", "email"); got.Before(end) {
		t.Errorf("upright email planned at %s, before the treatment ends at %s", got, end)
	}

	// Consent and upright, by email.
	if _, ok := tb.smtp.Wait(2, time.Minute); !ok {
		t.Fatalf("%d emails, want the consent and the upright", tb.smtp.Len())
	}
	tb.waitStatus(t, "bk_fo", "upright", "email", "sent")
	upright := emailWithID(t, tb.smtp, "bk_fo:v1:upright:email")
	if len(upright) != 1 {
		t.Fatalf("%d upright emails, want 1", len(upright))
	}
	h, _ := upright[0].Header()
	if len(upright[0].To) != 1 || upright[0].To[0] != patientTo || !strings.Contains(h.Get("Subject"), "A message from Test Clinic") ||
		!strings.Contains(string(upright[0].Data), "stay upright") {
		t.Errorf("upright email to %v, subject %q: want the patient, the clinic's subject and the upright text", upright[0].To, h.Get("Subject"))
	}
	if late := upright[0].Received.Sub(end); late < 0 {
		t.Errorf("upright email arrived %s before the treatment ended", -late)
	}

	tb.waitIdle(t)
	if n := tb.smtp.Len(); n != 2 {
		t.Errorf("%d emails after the queue went idle, want 2 (consent, upright once)", n)
	}
	if n := tb.twilio.Requests(); n != 0 {
		t.Errorf("%d requests to Twilio for a patient without texts", n)
	}
	tl = tb.timeline(t, "bk_fo")
	for _, step := range smsOnlySteps[1:] {
		if st, _ := tl.status(step, "email"); st != "scheduled" {
			t.Errorf("%s/email = %s, want scheduled", step, st)
		}
	}
	tb.checkTasks(t, "bk_fo")
}

// TestFallbackAfterInvalidNumber: Twilio refuses the number (21211); the
// upright text fails with the code, is not retried, and the step goes once
// by email instead.
func TestFallbackAfterInvalidNumber(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// The consent and the upright text: both refused.
	tb.twilio.Fail(2, 400, 21211, "Invalid 'To' Phone Number: "+patientTel)

	end := time.Now().Truncate(time.Second).Add(2 * time.Second)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_fi", end), 201)
	tb.waitStatus(t, "bk_fi", "upright", "sms", "failed")
	tb.waitStatus(t, "bk_fi", "upright", "email", "sent")

	tl := tb.timeline(t, "bk_fi")
	for _, m := range tl.Messages {
		if m.Step == "upright" && m.Channel == "sms" {
			if !strings.Contains(m.Error, "twilio:21211") {
				t.Errorf("upright SMS error = %q, want the Twilio code", m.Error)
			}
			if strings.Contains(m.Error, patientTel) || strings.Contains(m.Error, "5555550123") {
				t.Errorf("upright SMS error %q quotes the number", m.Error)
			}
		}
	}
	var fallback bool
	for _, e := range tb.history(t, "bk_fi") {
		fallback = fallback || (e.Kind == "fallback" && e.Step == "upright" && e.Channel == "email")
	}
	if !fallback {
		t.Error("the history has no fallback entry for upright by email")
	}

	tb.waitIdle(t)
	upright := emailWithID(t, tb.smtp, "bk_fi:v1:upright:email")
	if len(upright) != 1 || !strings.Contains(string(upright[0].Data), "stay upright") {
		t.Errorf("%d upright emails, want 1 with the upright text", len(upright))
	}
	if n := tb.smtp.Len(); n != 2 {
		t.Errorf("%d emails, want the consent and the upright fallback", n)
	}
	if n, m := tb.twilio.Requests(), tb.twilio.Len(); n != 2 || m != 0 {
		t.Errorf("Twilio got %d requests and took %d texts, want 2 and 0 (a refused number is not retried)", n, m)
	}
	tb.checkTasks(t, "bk_fi")
}

// TestFallbackAfterStop: the patient's STOP suppresses the texts, and the
// clinical SMS-only steps are planned by email at their own times instead.
func TestFallbackAfterStop(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_fs", time.Now().Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_fs", "consent", "sms", "sent")
	before := tb.timeline(t, "bk_fs")

	if status, err := tb.twilio.Reply(tb.url+"/webhooks/twilio/inbound", patientTel, "STOP"); err != nil || status != 200 {
		t.Fatalf("reply = %d, %v", status, err)
	}
	waitFor(t, time.Minute, func() bool {
		st, _ := tb.timeline(t, "bk_fs").status("day3", "email")
		return st == "scheduled"
	})
	tl := tb.timeline(t, "bk_fs")
	for _, step := range smsOnlySteps {
		if st, _ := tl.status(step, "sms"); st != "suppressed" {
			t.Errorf("%s/sms = %s after STOP, want suppressed", step, st)
		}
		if st, _ := tl.status(step, "email"); st != "scheduled" {
			t.Errorf("%s/email = %s after STOP, want scheduled", step, st)
		}
		if got, want := tl.sendAt(step, "email"), before.sendAt(step, "sms"); !got.Equal(want) {
			t.Errorf("%s/email at %s, want the text's time %s", step, got, want)
		}
	}
	// Steps with an email of their own keep it, and get no second one.
	seen := map[string]int{}
	for _, m := range tl.Messages {
		seen[m.Step+"/"+m.Channel]++
	}
	for key, n := range seen {
		if n != 1 {
			t.Errorf("%d messages %s, want 1", n, key)
		}
	}
	for _, step := range []string{"day1", "day14"} {
		if sms, _ := tl.status(step, "sms"); sms != "suppressed" {
			t.Errorf("%s/sms = %s after STOP", step, sms)
		}
		if email, _ := tl.status(step, "email"); email != "scheduled" {
			t.Errorf("%s/email = %s after STOP", step, email)
		}
	}
	fallbacks := 0
	for _, e := range tb.history(t, "bk_fs") {
		if e.Kind == "fallback" && e.Channel == "email" {
			fallbacks++
		}
	}
	if fallbacks != len(smsOnlySteps) {
		t.Errorf("%d fallback entries in the history, want %d", fallbacks, len(smsOnlySteps))
	}
	tb.checkTasks(t, "bk_fs")
}

// lateNightZone returns an IANA zone in which it is now 02:00 to 02:59, deep
// inside quiet hours of 21:00 to 08:00. The Etc/GMT zones cover every whole
// hour offset from -12 to +14 (their names have the sign reversed), so one
// of them always fits.
func lateNightZone(t *testing.T, now time.Time) string {
	t.Helper()
	for offset := -12; offset <= 14; offset++ {
		name := "Etc/GMT"
		switch {
		case offset > 0:
			name += "-" + strconv.Itoa(offset)
		case offset < 0:
			name += "+" + strconv.Itoa(-offset)
		}
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		if now.In(loc).Hour() == 2 {
			return name
		}
	}
	t.Fatalf("no Etc/GMT zone has 02:00 at %s", now)
	return ""
}

// TestLateNightConsentEmailGoesAtOnce: quiet hours are a rule for texts. A
// booking made in the middle of the patient's night gets its consent email
// at once, and its consent text in the morning.
func TestLateNightConsentEmailGoesAtOnce(t *testing.T) {
	t.Parallel()
	clinic := filepath.Join(t.TempDir(), "clinic.yaml")
	profile := "name: Test Clinic\nphone: \"+1 555 555 0199\"\naddress: 1 Test Street\ntimezone: America/New_York\n" +
		"quiet_hours: {start: \"21:00\", end: \"08:00\"}\n"
	if err := os.WriteFile(clinic, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	tb := start(t, "all", "", "AFTERCARE_CLINIC_FILE="+clinic)

	now := time.Now()
	zone := lateNightZone(t, now)
	loc, _ := time.LoadLocation(zone)
	body := bookingBody("bk_night", now.Add(48*time.Hour))
	body["patient"].(map[string]any)["timezone"] = zone
	tl := tb.mustRequest(t, "POST", "/v1/bookings", body, 201)
	booked := time.Now()

	// The end of quiet hours: 08:00 the same local day (it is 02:xx there).
	y, m, d := now.In(loc).Date()
	morning := time.Date(y, m, d, 8, 0, 0, 0, loc)
	if st, _ := tl.status("consent", "sms"); st != "scheduled" || !tl.sendAt("consent", "sms").Equal(morning) {
		t.Errorf("consent SMS = %s at %s, want scheduled at the end of quiet hours %s", st, tl.sendAt("consent", "sms"), morning)
	}
	if at := tl.sendAt("consent", "email"); at.After(booked) {
		t.Errorf("consent email planned at %s, want at once (booked by %s)", at, booked)
	}

	if _, ok := tb.smtp.Wait(1, time.Minute); !ok {
		t.Fatal("no consent email in the middle of the night")
	}
	if got := emailWithID(t, tb.smtp, "bk_night:v1:consent:email"); len(got) != 1 || got[0].To[0] != patientTo {
		t.Errorf("%d consent emails to the patient, want 1", len(got))
	}
	tb.waitStatus(t, "bk_night", "consent", "email", "sent")
	tb.waitIdle(t)
	if n := tb.twilio.Requests(); n != 0 {
		t.Errorf("%d requests to Twilio in quiet hours, want none", n)
	}
	tl = tb.timeline(t, "bk_night")
	if st, _ := tl.status("consent", "sms"); st != "scheduled" || !tl.sendAt("consent", "sms").Equal(morning) {
		t.Errorf("consent SMS = %s at %s after the email went, want still scheduled at %s", st, tl.sendAt("consent", "sms"), morning)
	}
	tb.checkTasks(t, "bk_night")
}

// TestResendThroughAPI: a consent text Twilio refused is sent again on
// purpose through the API, once; a message already sent cannot be; the
// history says who asked and why.
func TestResendThroughAPI(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.twilio.Fail(1, 400, 21211, "Invalid 'To' Phone Number: "+patientTel)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_rs", time.Now().Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_rs", "consent", "sms", "failed")
	tb.waitStatus(t, "bk_rs", "consent", "email", "sent")
	if n := tb.twilio.Len(); n != 0 {
		t.Fatalf("Twilio took %d texts, want none", n)
	}

	const path = "/v1/bookings/bk_rs/messages/consent/sms/resend"
	// Who asks and why are both required.
	status, data := tb.request(t, "POST", path, map[string]string{"reason": "the patient did not get it"})
	if status != 422 || !strings.Contains(string(data), `"by"`) {
		t.Errorf("resend without by = %d %s, want 422 naming by", status, data)
	}
	if status, _ := tb.request(t, "POST", "/v1/bookings/bk_rs/messages/nonesuch/sms/resend", map[string]string{"by": "front desk", "reason": "x"}); status != 404 {
		t.Errorf("resend of an unknown step = %d, want 404", status)
	}

	const reason = "checked the number with the patient"
	tl := tb.mustRequest(t, "POST", path, map[string]string{"by": "front desk", "reason": reason}, 200)
	if st, _ := tl.status("consent", "sms"); tl.Version != 2 || st != "scheduled" {
		t.Errorf("after the resend: version %d, consent SMS %s; want 2, scheduled", tl.Version, st)
	}
	sms, ok := tb.twilio.Wait(1, time.Minute)
	if !ok {
		t.Fatal("the consent text was not sent again")
	}
	consent := textSaying(t, sms, "confirm here")
	tb.waitStatus(t, "bk_rs", "consent", "sms", "sent")
	if _, id := tb.timeline(t, "bk_rs").status("consent", "sms"); id != consent.SID {
		t.Errorf("consent SMS provider id %q, want %q", id, consent.SID)
	}

	tb.waitIdle(t)
	if n, m := tb.twilio.Len(), tb.twilio.Requests(); n != 1 || m != 2 {
		t.Errorf("Twilio took %d texts of %d requests, want 1 of 2", n, m)
	}
	if n := tb.smtp.Len(); n != 1 {
		t.Errorf("%d emails, want the one consent email: the resend is of the text only", n)
	}

	// Sent now: not again.
	status, data = tb.request(t, "POST", path, map[string]string{"by": "front desk", "reason": "again"})
	if status != 409 {
		t.Errorf("resend of a sent message = %d %s, want 409", status, data)
	}

	var resends []event
	for _, e := range tb.history(t, "bk_rs") {
		if e.Kind == "resend" {
			resends = append(resends, e)
		}
	}
	if len(resends) != 1 || resends[0].Step != "consent" || resends[0].Channel != "sms" || resends[0].By != "front desk" || resends[0].Detail != reason {
		t.Errorf("resend entries %+v, want one for consent/sms by the front desk, with the reason", resends)
	}
	tb.checkTasks(t, "bk_rs")
}

// where is a place the search looks in, and the text it holds.
type where struct{ name, text string }

// redisContents lists every key of the Redis at addr with its value, field
// by field, whatever its type.
func redisContents(t *testing.T, addr string) []where {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []where
	for _, k := range keys {
		out = append(out, where{"the name of key " + k, k})
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			v, err := rdb.Get(ctx, k).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			out = append(out, where{"GET " + k, v})
		case "hash":
			h, err := rdb.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range h {
				out = append(out, where{"HGET " + k + " " + f, f + "\x00" + v})
			}
		case "list":
			vs, err := rdb.LRange(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range vs {
				out = append(out, where{fmt.Sprintf("LINDEX %s %d", k, i), v})
			}
		case "set":
			vs, err := rdb.SMembers(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				out = append(out, where{"SMEMBERS " + k, v})
			}
		case "zset":
			zs, err := rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				out = append(out, where{"ZRANGE " + k, fmt.Sprint(z.Member)})
			}
		case "stream":
			xs, err := rdb.XRange(ctx, k, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range xs {
				out = append(out, where{"XRANGE " + k + " " + x.ID, fmt.Sprint(x.Values)})
			}
		case "none": // expired since KEYS
		default:
			t.Errorf("key %s has type %s, which the search does not read", k, typ)
		}
	}
	return out
}

// needle is one spelling of something that must not be found; token
// matches it only as a whole word (a short local part such as "rej" is a
// piece of many words: "rejected").
type needle struct {
	what, text string
	token      bool
}

func (n needle) in(s string) bool {
	if !n.token {
		return strings.Contains(strings.ToLower(s), strings.ToLower(n.text))
	}
	// JSON as Go writes it escapes the angle brackets around an address.
	s = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(s)
	return regexp.MustCompile(`(?i)(^|[^\p{L}\p{N}])` + regexp.QuoteMeta(n.text) + `($|[^\p{L}\p{N}])`).MatchString(s)
}

func isASCII(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r > 127 })
}

// spellings are the ways text may be written down: as is, and as JSON or Go
// escape it (mar\u00eda).
func spellings(what, text string, token bool) []needle {
	out := []needle{{what, text, token}}
	if q := strconv.QuoteToASCII(text); q[1:len(q)-1] != text {
		out = append(out, needle{what + " (escaped)", q[1 : len(q)-1], token})
	}
	return out
}

// nonASCIIAddresses are the addresses TestNonASCIIAddressNeverStored books,
// by booking id. The ids do not spell a local part: "rej" would be found in
// "bk_rej".
var nonASCIIAddresses = []struct{ id, addr string }{
	{"bk_na_1", "maría@example.com"},
	{"bk_na_2", "rej@bücher.example"},
}

// refusedAddresses books each of nonASCIIAddresses with an SMTP server that
// refuses the consent email permanently, quoting the address as servers do,
// and returns every place the address could be kept afterwards: each key,
// field and value in Redis, the log, the dashboard's task lists and the
// clinic inbox.
//
// The service runs with AFTERCARE_DATA_KEY (see start): the booking record
// is encrypted, so all of Redis is searched, its booking field included.
func refusedAddresses(t *testing.T) []where {
	t.Helper()
	tb := setup(t)
	for i, a := range nonASCIIAddresses {
		body := bookingBody(a.id, time.Now().Add(48*time.Hour))
		body["patient"].(map[string]any)["email"] = a.addr
		if i == 0 {
			emailOnly(body) // nothing else of her consent reaches her: the clinic inbox is told
		}
		// One booking at a time: each refusal quotes the address it refuses.
		tb.smtp.Reject(1, "RCPT", 550, "5.1.1 <"+a.addr+">: Recipient address rejected: mailbox unavailable")
		tb.mustRequest(t, "POST", "/v1/bookings", body, 201)
		tb.waitStatus(t, a.id, "consent", "email", "failed")
	}
	tb.waitIdle(t)
	if n := tb.smtp.Len(); n != 0 {
		t.Fatalf("the SMTP server took %d emails, want none", n)
	}

	var places []where
	places = append(places, redisContents(t, tb.redisAddr)...)
	places = append(places, where{"log", tb.logs.String()})
	for _, q := range dashboardQueues(t, tb) {
		for _, state := range []string{"archived", "retry", "scheduled", "pending", "active", "completed"} {
			path := "/monitoring/api/queues/" + q + "/" + state + "_tasks"
			status, body := tb.get(t, path, "ops", "ops-secret")
			if status != 200 {
				t.Errorf("dashboard %s = %d %s", path, status, body)
			}
			places = append(places, where{"dashboard " + path, body})
		}
	}
	_, inbox := tb.request(t, "GET", "/v1/inbox?status=all", nil)
	places = append(places, where{"GET /v1/inbox", string(inbox)})

	// The search must look where the refusals went: the archived tasks'
	// errors, and the inbox item that tells the clinic of the first.
	for _, want := range []where{
		{"dashboard /monitoring/api/queues/email/archived_tasks", "bk_na_1:v1:consent:email"},
		{"dashboard /monitoring/api/queues/email/archived_tasks", "bk_na_2:v1:consent:email"},
		{"dashboard /monitoring/api/queues/email/archived_tasks", "smtp:550"},
		{"GET /v1/inbox", `"booking_id": "bk_na_1"`},
	} {
		if !slices.ContainsFunc(places, func(p where) bool { return p.name == want.name && strings.Contains(p.text, want.text) }) {
			t.Errorf("%s lacks %q: the search would miss the refusal", want.name, want.text)
		}
	}
	return places
}

// search reports each place that holds one of needles.
func search(t *testing.T, places []where, needles []needle) {
	t.Helper()
	for _, p := range places {
		for _, n := range needles {
			if n.in(p.text) {
				t.Errorf("%s holds the %s %q:\n%s", p.name, n.what, n.text, clipText(p.text, n.text))
			}
		}
	}
}

// TestNonASCIIAddressNeverStored: addresses in any script are accepted, and
// when the SMTP server refuses them, quoting them as servers do, neither the
// address nor its local part is kept anywhere outside the encrypted booking
// record: not in Redis (asynq's payloads and the errors of archived tasks
// included), not in the log, not on the dashboard, not in the inbox.
func TestNonASCIIAddressNeverStored(t *testing.T) {
	t.Parallel()
	places := refusedAddresses(t)
	var needles []needle
	for _, a := range nonASCIIAddresses {
		local, _, _ := strings.Cut(a.addr, "@")
		needles = append(needles, spellings("address", a.addr, false)...)
		// An ASCII local part is matched as a word; one with other letters
		// (maría) is matched anywhere.
		needles = append(needles, spellings("local part", local, isASCII(local))...)
	}
	needles = append(needles, needle{"address (IDNA)", "rej@xn--bcher-kva.example", false})
	search(t, places, needles)
}

// dashboardQueues returns the names of the queues the dashboard knows (a
// queue no task was ever put in is not one).
func dashboardQueues(t *testing.T, tb *testBundle) []string {
	t.Helper()
	status, body := tb.get(t, "/monitoring/api/queues", "ops", "ops-secret")
	var page struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(body), &page); status != 200 || err != nil {
		t.Fatalf("dashboard queues = %d %s (%v)", status, body, err)
	}
	var names []string
	for _, q := range page.Queues {
		names = append(names, q.Queue)
	}
	if !slices.Contains(names, "email") {
		t.Fatalf("the dashboard does not know the email queue: %s", body)
	}
	return names
}

// clipText returns the part of s around the first sight of text, for a
// failure message.
func clipText(s, text string) string {
	i := strings.Index(strings.ToLower(s), strings.ToLower(text))
	if i < 0 {
		if len(s) > 400 {
			return s[:400] + "..."
		}
		return s
	}
	from, to := max(0, i-200), min(len(s), i+len(text)+200)
	return strings.ToValidUTF8(s[from:to], "?")
}
