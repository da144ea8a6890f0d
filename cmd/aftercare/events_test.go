package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/aftercare/aftercare"
)

// eventSecret signs the test's events: "whsec_" and 32 bytes in base64.
const eventSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// delivery is one delivery the receiver saw, verified with the Standard
// Webhooks reference library.
type delivery struct {
	id     string
	at     time.Time
	body   string
	status int // what the receiver answered
	event  struct {
		Type string               `json:"type"`
		Data aftercare.NoticeData `json:"data"`
	}
}

// receiver is a clinic system that takes aftercare's events: it verifies
// each signature as the specification's library does and answers as
// answer says (200 if nil).
type receiver struct {
	t      *testing.T
	url    string
	wh     *standardwebhooks.Webhook
	mu     sync.Mutex
	calls  []delivery
	answer func(c delivery, attempt int) (int, http.Header)
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(eventSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, wh: wh}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.url = srv.URL + "/hooks/aftercare"
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.t.Errorf("event %s: signature: %v", r.Header.Get("webhook-id"), err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	c := delivery{id: r.Header.Get("webhook-id"), at: time.Now(), body: string(body), status: http.StatusOK}
	if err := json.Unmarshal(body, &c.event); err != nil {
		rc.t.Errorf("event %s: %v", c.id, err)
	}
	rc.mu.Lock()
	attempt := 1
	for _, o := range rc.calls {
		if o.id == c.id {
			attempt++
		}
	}
	answer := rc.answer
	rc.mu.Unlock()
	var header http.Header
	if answer != nil {
		c.status, header = answer(c, attempt)
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	rc.mu.Lock()
	rc.calls = append(rc.calls, c)
	rc.mu.Unlock()
	w.WriteHeader(c.status)
}

func (rc *receiver) setAnswer(f func(c delivery, attempt int) (int, http.Header)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.answer = f
}

// taken returns the deliveries the receiver took (2xx).
func (rc *receiver) taken() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []delivery
	for _, c := range rc.calls {
		if c.status/100 == 2 {
			out = append(out, c)
		}
	}
	return out
}

// all returns every delivery.
func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.calls)
}

// waitType waits until the receiver took an event of type typ about
// booking (any if "") and returns it.
func (rc *receiver) waitType(t *testing.T, typ, booking string) delivery {
	t.Helper()
	return rc.waitMatch(t, func(c delivery) bool {
		return c.event.Type == typ && (booking == "" || c.event.Data.BookingID == booking)
	})
}

// waitMatch waits until the receiver took an event that match accepts, and
// returns it.
func (rc *receiver) waitMatch(t *testing.T, match func(delivery) bool) delivery {
	t.Helper()
	var found delivery
	waitFor(t, time.Minute, func() bool {
		i := slices.IndexFunc(rc.taken(), match)
		if i >= 0 {
			found = rc.taken()[i]
		}
		return i >= 0
	})
	return found
}

// fullHistory is a booking's audit trail as GET shows it.
func (tb *testBundle) fullHistory(t *testing.T, id string) []aftercare.Event {
	t.Helper()
	status, data := tb.request(t, "GET", "/v1/bookings/"+id, nil)
	if status != 200 {
		t.Fatalf("GET %s = %d %s", id, status, data)
	}
	var tl aftercare.Timeline
	if err := json.Unmarshal(data, &tl); err != nil {
		t.Fatal(err)
	}
	return tl.History
}

// TestEventsTellEveryChange: every kind of change, made as the clinic and
// the patient make them, reaches the clinic's receiver as its event, once,
// signed, numbered in its booking's order, with no patient data.
func TestEventsTellEveryChange(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	tb := start(t, "all", "", "AFTERCARE_WEBHOOK_URL="+rc.url, "AFTERCARE_WEBHOOK_SECRET="+eventSecret)
	inbound := tb.url + "/webhooks/twilio/inbound"
	now := time.Now()

	// A number Twilio refuses: the consent text fails; then a resend on
	// purpose plans it again.
	tb.twilio.Fail(1, 400, 21211, "Invalid 'To' Phone Number: "+patientTel)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_ed", now.Add(72*time.Hour)), 201)
	tb.waitStatus(t, "bk_ed", "consent", "sms", "failed")
	tb.mustRequest(t, "POST", "/v1/bookings/bk_ed/messages/consent/sms/resend", map[string]any{"by": "front desk", "reason": "number fixed"}, 200)
	tb.waitStatus(t, "bk_ed", "consent", "sms", "sent")

	// Booked, delivered, acknowledged, rescheduled, cancelled.
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_ea", now.Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_ea", "consent", "sms", "sent")
	var sid string
	for _, m := range tb.timeline(t, "bk_ea").Messages {
		if m.Step == "consent" && m.Channel == "sms" {
			sid = m.ProviderID
		}
	}
	if status, err := tb.twilio.Callback(sid, "delivered", "", "tok-ea"); err != nil || status != 200 {
		t.Fatalf("receipt = %d, %v", status, err)
	}
	tb.waitStatus(t, "bk_ea", "consent", "sms", "delivered")
	if status, err := tb.twilio.Reply(inbound, patientTel, "YES"); err != nil || status != 200 {
		t.Fatalf("YES = %d, %v", status, err)
	}
	tb.mustRequest(t, "PUT", "/v1/bookings/bk_ea", bookingBody("bk_ea", now.Add(50*time.Hour)), 200)
	tb.mustRequest(t, "DELETE", "/v1/bookings/bk_ea", nil, 200)

	// Treated, then its aftercare stopped on purpose.
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_eb", now.Add(time.Minute)), 201)
	tb.mustRequest(t, "POST", "/v1/bookings/bk_eb/treated", map[string]any{"treated_at": now.Format(time.RFC3339)}, 200)
	tb.mustRequest(t, "DELETE", "/v1/bookings/bk_eb?stop_aftercare=true&reason=the+clinic+takes+over", nil, 200)

	// Booked a day after the visit: the consent and safety texts expire,
	// the reminder is skipped, and a person is told.
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_ec", now.Add(-26*time.Hour)), 201)

	// The patient writes in, urgently; someone takes it.
	if status, err := tb.twilio.Reply(inbound, patientTel, "my eyelid is drooping and it is hard to swallow"); err != nil || status != 200 {
		t.Fatalf("urgent text = %d, %v", status, err)
	}
	urgent := rc.waitMatch(t, func(c delivery) bool {
		return c.event.Type == "inbox.item_created" && c.event.Data.Urgency == aftercare.Urgent
	})
	if status, data := tb.request(t, "POST", "/v1/inbox/"+urgent.event.Data.InboxID+"/resolve", map[string]any{"note": "called her", "by": "nurse"}); status != 200 {
		t.Fatalf("resolve = %d %s", status, data)
	}

	// STOP, then START.
	for _, text := range []string{"STOP", "START"} {
		if status, err := tb.twilio.Reply(inbound, patientTel, text); err != nil || status != 200 {
			t.Fatalf("%s = %d, %v", text, status, err)
		}
	}

	for _, typ := range []string{
		"booking.scheduled", "booking.rescheduled", "booking.cancelled", "booking.treated", "booking.aftercare_stopped",
		"message.scheduled", "message.sent", "message.delivered", "message.failed", "message.expired",
		"message.skipped", "message.suppressed", "consent.acknowledged", "patient.opted_out", "patient.opted_in",
		"inbox.item_created", "inbox.item_resolved",
	} {
		rc.waitType(t, typ, "")
	}
	failed := rc.waitType(t, "message.failed", "bk_ed")
	if failed.event.Data.ErrorCode != "twilio:21211" || failed.event.Data.Step != "consent" {
		t.Errorf("message.failed data %+v, want the consent text with twilio:21211", failed.event.Data)
	}

	// Once each: every booking's events are exactly its trail's, each
	// delivered once, in its numbering.
	for _, id := range []string{"bk_ea", "bk_eb", "bk_ec", "bk_ed"} {
		history := tb.fullHistory(t, id)
		want := map[int]aftercare.EventType{}
		for i, e := range history {
			if n, ok := aftercare.BookingNotice(id, time.Time{}, i+1, e); ok {
				want[i+1] = n.Type
			}
		}
		var got map[int][]string
		waitFor(t, time.Minute, func() bool {
			got = map[int][]string{}
			for _, c := range rc.taken() {
				if c.event.Data.BookingID == id && c.event.Data.InboxID == "" {
					got[c.event.Data.Sequence] = append(got[c.event.Data.Sequence], c.event.Type)
				}
			}
			return len(got) >= len(want)
		})
		for seq, typ := range want {
			if g := got[seq]; len(g) != 1 || g[0] != string(typ) {
				t.Errorf("%s event %d: got %v, want one %s", id, seq, g, typ)
			}
		}
		for seq, g := range got {
			if _, ok := want[seq]; !ok {
				t.Errorf("%s event %d: got %v for an entry that causes none", id, seq, g)
			}
		}
	}

	ids := map[string]int{}
	for _, c := range rc.taken() {
		ids[c.id]++
		for _, secret := range []string{patientTel, strings.TrimPrefix(patientTel, "+1"), patientTo, "Ana", "eyelid", "swallow", "nurse", "front desk"} {
			if strings.Contains(c.body, secret) {
				t.Errorf("event %s carries %q: %s", c.id, secret, c.body)
			}
		}
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
}

// TestEventRetries: a delivery that fails is tried again with the same
// webhook-id, on the schedule or after Retry-After when the receiver gives
// a later one; a 410 Gone turns the endpoint off until an operator turns
// it on, and what waited meanwhile then goes; a delivery whose retries ran
// out goes again on request.
func TestEventRetries(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	rc.setAnswer(func(c delivery, attempt int) (int, http.Header) {
		switch {
		case c.event.Data.BookingID != "bk_r1" || attempt > 1:
			return 200, nil
		case c.event.Type == "booking.scheduled":
			return http.StatusInternalServerError, nil
		case c.event.Type == "message.sent" && c.event.Data.Channel == aftercare.SMS:
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"8"}}
		}
		return 200, nil
	})
	tb := start(t, "all", "", "AFTERCARE_WEBHOOK_URL="+rc.url+"?token=abc", "AFTERCARE_WEBHOOK_SECRET="+eventSecret)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_r1", time.Now().Add(48*time.Hour)), 201)

	tries := func(id string) []delivery {
		var out []delivery
		for _, c := range rc.all() {
			if c.id == id {
				out = append(out, c)
			}
		}
		return out
	}
	scheduled := rc.waitType(t, "booking.scheduled", "bk_r1")
	if got := tries(scheduled.id); len(got) != 2 || got[0].status != 500 || got[1].status != 200 {
		t.Errorf("%d calls for %s, want a 500 and a 200", len(got), scheduled.id)
	} else if gap := got[1].at.Sub(got[0].at); gap < 4*time.Second {
		t.Errorf("retry after the 500 came %v later, want about 5 s (the schedule's first step)", gap)
	}
	sent := rc.waitMatch(t, func(c delivery) bool {
		return c.event.Type == "message.sent" && c.event.Data.BookingID == "bk_r1" && c.event.Data.Channel == aftercare.SMS
	})
	if got := tries(sent.id); len(got) != 2 || got[0].status != 429 {
		t.Errorf("%d calls for %s, want a 429 and a 200", len(got), sent.id)
	} else if gap := got[1].at.Sub(got[0].at); gap < 7*time.Second {
		t.Errorf("retry after the 429 came %v later, want its Retry-After of 8 s, later than the schedule's 5 s", gap)
	}

	// The receiver is gone: the endpoint turns off, and what follows waits
	// for it, without using up its retries.
	rc.setAnswer(func(delivery, int) (int, http.Header) { return http.StatusGone, nil })
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_r2", time.Now().Add(48*time.Hour)), 201)
	waitFor(t, time.Minute, func() bool {
		status, data := tb.request(t, "GET", "/v1/event-endpoints", nil)
		return status == 200 && strings.Contains(string(data), `"disabled": true`)
	})
	tb.waitStatus(t, "bk_r2", "consent", "email", "sent")
	rdb := redis.NewClient(&redis.Options{Addr: tb.redisAddr})
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	waitFor(t, time.Minute, func() bool { // booked, and both consents sent: three events parked
		info, err := insp.GetQueueInfo(aftercare.QueueWebhooks)
		return err == nil && info.Pending == 0 && info.Active == 0 && info.Retry >= 3
	})
	gone := len(rc.all())
	status, data := tb.request(t, "GET", "/metrics", nil)
	if status != 200 || !strings.Contains(string(data), `aftercare_event_endpoint_disabled{endpoint="default"} 1`) ||
		!strings.Contains(string(data), `aftercare_event_deliveries_total{endpoint="default",result="disabled"}`) {
		t.Errorf("metrics do not show the endpoint disabled:\n%s", grepLines(string(data), "aftercare_event"))
	}

	// The operator looks, and turns it on again, from the command line:
	// what waited goes at once.
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		args = append([]string{"events", "--url", tb.url, "--token", testToken}, args...)
		if err := run(context.Background(), args, func(string) (string, bool) { return "", false }, &out, io.Discard); err != nil {
			t.Fatalf("aftercare %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	if out := cli(); !strings.Contains(out, "default  DISABLED since") || strings.Contains(out, "token") {
		t.Errorf("aftercare events:\n%s\nwant the endpoint disabled, its URL without the query", out)
	}
	rc.setAnswer(nil)
	if out := cli("enable", "default"); !strings.Contains(out, "default  on") {
		t.Errorf("aftercare events enable default:\n%s", out)
	}
	rc.waitType(t, "message.sent", "bk_r2")
	r2 := rc.waitType(t, "booking.scheduled", "bk_r2")
	// Whichever event met the 410 (one of bk_r1's may still have been on
	// its way), it goes again under the same webhook-id.
	for _, c := range rc.all()[:gone] {
		if c.status == http.StatusGone {
			rc.waitMatch(t, func(d delivery) bool { return d.id == c.id })
		}
	}

	// A delivery whose retries ran out (made so here by archiving it) goes
	// again with redeliver --since.
	since := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	rc.setAnswer(func(c delivery, _ int) (int, http.Header) {
		if c.event.Data.BookingID == "bk_r3" {
			return http.StatusInternalServerError, nil
		}
		return 200, nil
	})
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_r3", time.Now().Add(48*time.Hour)), 201)
	var r3 string
	waitFor(t, time.Minute, func() bool {
		for _, c := range rc.all() {
			if c.event.Type == "booking.scheduled" && c.event.Data.BookingID == "bk_r3" && c.status == 500 {
				r3 = c.id
			}
		}
		return r3 != ""
	})
	taskID := aftercare.Delivery{EventID: r3, Endpoint: "default"}.TaskID()
	waitFor(t, time.Minute, func() bool { return insp.ArchiveTask(aftercare.QueueWebhooks, taskID) == nil })
	rc.setAnswer(nil)
	if out := cli("redeliver", "--since", since.Format(time.RFC3339)); !strings.Contains(out, "1 deliveries queued again") {
		t.Errorf("aftercare events redeliver --since:\n%s", out)
	}
	rc.waitType(t, "booking.scheduled", "bk_r3")

	// One event again, by its id.
	before := len(rc.taken())
	if out := cli("redeliver", r2.id); !strings.Contains(out, "1 deliveries queued again") {
		t.Errorf("aftercare events redeliver %s:\n%s", r2.id, out)
	}
	waitFor(t, time.Minute, func() bool { return len(rc.taken()) > before })
	if status, _ := tb.request(t, "POST", "/v1/events/ev_nothing_1/redeliver", nil); status != 404 {
		t.Errorf("redeliver of an unknown event = %d, want 404", status)
	}
}

func hasType(calls []delivery, typ, booking string) bool {
	return slices.ContainsFunc(calls, func(c delivery) bool { return c.event.Type == typ && c.event.Data.BookingID == booking })
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
