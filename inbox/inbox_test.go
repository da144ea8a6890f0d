package inbox_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/inbox"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/aftercare/aftercare/worker"
)

// planned is an alert task the inbox planned.
type planned struct {
	ref aftercare.AlertRef
	at  time.Time
}

// alerts records the alert tasks the inbox plans, instead of a task queue.
type alerts struct {
	mu   sync.Mutex
	refs []planned
}

func (a *alerts) Alert(_ context.Context, ref aftercare.AlertRef, at time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refs = append(a.refs, planned{ref, at})
	return nil
}

func (a *alerts) take() []planned {
	a.mu.Lock()
	defer a.mu.Unlock()
	refs := a.refs
	a.refs = nil
	return refs
}

// sender records what it sends.
type sender struct {
	mu   sync.Mutex
	sent []aftercare.Outgoing
	err  error // if set, every send fails with it
}

func (s *sender) Send(_ context.Context, msg aftercare.Outgoing) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return "", s.err
	}
	s.sent = append(s.sent, msg)
	return "P" + msg.ID, nil
}

func (s *sender) all() []aftercare.Outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]aftercare.Outgoing(nil), s.sent...)
}

type testBundle struct {
	rdb    *redis.Client
	store  *redisstore.Store
	sched  *scheduler.Client
	inbox  *inbox.Inbox
	alerts *alerts
	sms    *sender
	email  *sender
	clock  *fixture.Clock
	clinic aftercare.Clinic
}

// tuesday10 is a Tuesday at 10:00 in New York, inside the example clinic's
// opening hours.
var tuesday10 = time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb := redistest.Client(t)
	protocols := fixture.Protocols(t)
	shared, err := protocol.BuiltinRedFlags()
	if err != nil {
		t.Fatal(err)
	}
	clinic := fixture.AnyHour(t)
	renderer, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.NewSealed(rdb, [][]byte{[]byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBundle{rdb: rdb, store: store, alerts: &alerts{}, sms: &sender{}, email: &sender{}, clock: fixture.NewClock(tuesday10), clinic: clinic}
	tb.sched = scheduler.New(store, taskqueue.New(rdb), scheduler.Config{Protocols: protocols, Clinic: clinic, Now: tb.clock.Now})
	tb.inbox = inbox.New(inbox.Config{Store: store, Bookings: tb.sched, Renderer: renderer, Alerts: tb.alerts,
		SMS: tb.sms, Email: tb.email, Clinic: clinic, RedFlags: protocol.RedFlags(protocols, shared), Now: tb.clock.Now})
	return tb
}

// tellProblems gives the bundle a scheduler that reports problems to its
// inbox, as the service wires them, and returns the protocols it plans by.
func (tb *testBundle) tellProblems() map[string]aftercare.Protocol {
	protocols, _ := protocol.Builtin()
	tb.sched = scheduler.New(tb.store, taskqueue.New(tb.rdb), scheduler.Config{Protocols: protocols, Clinic: tb.clinic,
		Now: tb.clock.Now, Problems: tb.inbox})
	return protocols
}

const patient = "+15555550123"

// book makes a booking for the patient, its consent SMS sent.
func (tb *testBundle) book(t *testing.T, id string, sentAt time.Time) {
	t.Helper()
	b := aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: tb.clock.Now().Add(72 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: patient, Timezone: "America/New_York", Locale: "en", SMSOptIn: true}}
	if _, _, err := tb.sched.Book(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	tb.rdb.HSet(context.Background(), redisstore.Key(id), "m:consent:sms", "sent", "p:consent:sms", "SM"+id, "hn", 1)
	tb.rdb.HSet(context.Background(), redisstore.BodyKey(id), "d:consent:sms", "sha256:"+id,
		"h:1", `{"at":"`+sentAt.Format(time.RFC3339)+`","step":"consent","channel":"sms","attempt":1,"outcome":"sent","detail":"SM`+id+`"}`)
}

func (tb *testBundle) receive(t *testing.T, sid, from, body string) (string, *aftercare.InboxItem) {
	t.Helper()
	answer, err := tb.inbox.Receive(context.Background(), aftercare.InboundText{ProviderID: sid, From: from, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	items, _, err := tb.inbox.List(context.Background(), aftercare.InboxFilter{}, "", 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("List = %v, %v", items, err)
	}
	return answer, items[0]
}

// TestReceive: what each kind of text gets, does and leaves in the inbox.
func TestReceive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, from, text string
		at               time.Duration // after Tuesday 10:00 in New York
		answer           string        // part of it; "" for none
		status           aftercare.InboxStatus
		urgency          aftercare.Urgency
		action           string
		alerts           int // alert tasks planned at once
		optedOut         bool
	}{
		{"urgent", patient, "Help! my eyelid is drooping and it is hard to swallow", 0,
			"call 911 now", aftercare.InboxOpen, aftercare.Urgent, "kept it for the clinic", 3, false},
		{"question in opening hours", patient, "Can I go to the gym tomorrow?", 0,
			"answer within 2 hours", aftercare.InboxOpen, aftercare.Normal, "kept it for the clinic", 1, false},
		{"question at night", patient, "Can I go to the gym tomorrow?", 12 * time.Hour,
			"reads messages again Wed, Dec 2 at 9:00 AM", aftercare.InboxOpen, aftercare.Normal, "kept it for the clinic", 1, false},
		{"unknown number", "+15555550199", "Hi, is this the clinic? My eye hurts a bit", 0,
			"answer within", aftercare.InboxOpen, aftercare.Normal, "kept it", 1, false},
		{"yes and more", patient, "Yes but my eyelid droops", 0,
			"call 911 now", aftercare.InboxOpen, aftercare.Urgent, "recorded the consent acknowledgement of booking bk_1", 3, false},
		{"opt-out words in another sense", patient, "End of day 2 and my brow still droops, should I come in?", 0,
			"call 911 now", aftercare.InboxOpen, aftercare.Urgent, "kept it for the clinic", 3, false},
		{"a clear wish to stop", patient, "please stop texting me", 0,
			"no more texts", aftercare.InboxResolved, aftercare.Normal, "opted the number out", 0, true},
		{"STOP", patient, "STOP", 0, "", aftercare.InboxResolved, aftercare.Normal, "opted the number out", 0, true},
		{"HELP", patient, "help", 0, "Reply STOP to opt out", aftercare.InboxResolved, aftercare.Normal, "answered", 0, false},
		{"YES", patient, "Yes", 0, "", aftercare.InboxResolved, aftercare.Normal, "recorded the consent acknowledgement", 0, false},
		{"a Spanish text from an unknown number", "+34612345678", "Hola, me cuesta tragar", 0,
			"llame ya al 911", aftercare.InboxOpen, aftercare.Urgent, "kept it", 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tb.book(t, "bk_1", tuesday10.Add(-time.Hour))
			tb.clock.Add(tt.at)
			answer, item := tb.receive(t, "SM1", tt.from, tt.text)
			if (tt.answer == "") != (answer == "") || !strings.Contains(answer, tt.answer) {
				t.Errorf("answer %q, want one with %q", answer, tt.answer)
			}
			if item.Status != tt.status || item.Urgency != tt.urgency || !strings.Contains(item.Action, tt.action) || item.Text != tt.text || item.Answer != answer {
				t.Errorf("item %+v, want %s %s, action %q", item, tt.status, tt.urgency, tt.action)
			}
			if n := len(tb.alerts.take()); n != tt.alerts {
				t.Errorf("%d alert tasks, want %d", n, tt.alerts)
			}
			out, err := tb.store.OptedOut(context.Background(), patient)
			if err != nil || out != tt.optedOut {
				t.Errorf("opted out = %v, %v; want %v", out, err, tt.optedOut)
			}
			// The booking notes the text, if it is the patient's.
			rec, err := tb.store.Get(context.Background(), "bk_1")
			if err != nil {
				t.Fatal(err)
			}
			noted := len(rec.Replies) == 1 && rec.Replies[0].InboxID == item.ID
			if want := tt.from == patient; noted != want || (want && item.BookingID != "bk_1") {
				t.Errorf("booking replies %+v, item booking %q; want noted %v", rec.Replies, item.BookingID, want)
			}
		})
	}
}

// TestReceiveTwice: a text Twilio delivers again is one item, answered the
// same, alerted once.
func TestReceiveTwice(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.book(t, "bk_1", tuesday10.Add(-time.Hour))
	first, item := tb.receive(t, "SM1", patient, "my vision is blurry")
	again, same := tb.receive(t, "SM1", patient, "my vision is blurry")
	if first != again || item.ID != same.ID {
		t.Errorf("a repeat answered %q (item %s), want %q (item %s)", again, same.ID, first, item.ID)
	}
	items, _, _ := tb.inbox.List(context.Background(), aftercare.InboxFilter{}, "", 10)
	if len(items) != 1 || len(tb.alerts.take()) != 3 {
		t.Errorf("%d items; want one, alerted once", len(items))
	}
	rec, _ := tb.store.Get(context.Background(), "bk_1")
	if len(rec.Replies) != 1 {
		t.Errorf("the booking notes %d replies, want 1", len(rec.Replies))
	}
}

// TestAcknowledgesTheConsentJustSent: YES goes to the booking whose consent
// SMS was sent last and is not acknowledged, with that message's id and
// digest.
func TestAcknowledgesTheConsentJustSent(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.book(t, "bk_old", tuesday10.Add(-48*time.Hour))
	tb.book(t, "bk_new", tuesday10.Add(-time.Hour))
	tb.rdb.HSet(context.Background(), redisstore.BodyKey("bk_new"), "ack", `{"at":"2026-12-01T14:30:00Z","method":"sms_reply"}`)
	tb.book(t, "bk_mid", tuesday10.Add(-24*time.Hour))
	_, item := tb.receive(t, "SM1", patient, "YES")
	if !strings.Contains(item.Action, "bk_mid") {
		t.Errorf("action %q, want bk_mid acknowledged (bk_new already was, bk_old is older)", item.Action)
	}
	rec, _ := tb.store.Get(context.Background(), "bk_mid")
	if a := rec.ConsentAcknowledgement; a == nil || a.Method != aftercare.AckBySMS || a.ProviderID != "SMbk_mid" || a.Digest != "sha256:bk_mid" {
		t.Errorf("acknowledgement %+v", a)
	}
	if rec, _ := tb.store.Get(context.Background(), "bk_old"); rec.ConsentAcknowledgement != nil {
		t.Error("bk_old was acknowledged too")
	}
}

// TestEscalation drives the alerts of an urgent text with a clock the test
// moves: alerts at once, again every ReescalateAfter while open, none after
// it is resolved.
func TestEscalation(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.book(t, "bk_1", tuesday10.Add(-time.Hour))
	ctx := context.Background()
	_, item := tb.receive(t, "SM1", patient, "I can't breathe properly and my eyelid droops")
	every := tb.clinic.Alerts.ReescalateAfter

	run := func(want int) (check *planned) {
		t.Helper()
		refs := tb.alerts.take()
		if len(refs) != want {
			t.Fatalf("%d alert tasks planned, want %d: %+v", len(refs), want, refs)
		}
		for _, p := range refs {
			if p.ref.Channel == "" {
				check = &p
				continue
			}
			if !p.at.Equal(tb.clock.Now()) {
				t.Errorf("alert %s planned for %s, want now", p.ref.TaskID(), p.at)
			}
			if err := tb.inbox.Handle(ctx, p.ref, aftercare.Run{Attempt: 1}); err != nil {
				t.Fatal(err)
			}
		}
		return check
	}
	check := run(3) // round 0: email, SMS, and the check of round 1
	if check == nil || check.ref.Round != 1 || !check.at.Equal(tuesday10.Add(every)) {
		t.Fatalf("check %+v, want round 1 in %s", check, every)
	}
	emails, texts := tb.email.all(), tb.sms.all()
	if len(emails) != 1 || len(texts) != 1 {
		t.Fatalf("%d emails and %d texts, want one of each", len(emails), len(texts))
	}
	if e := emails[0]; e.To != "care@example.com" || !strings.HasPrefix(e.Subject, "URGENT") || !strings.Contains(e.Text, "breathe") || !strings.Contains(e.Text, item.ID) {
		t.Errorf("alert email to %s: %q\n%s", e.To, e.Subject, e.Text)
	}
	if s := texts[0]; s.To != "+15555550101" || !strings.HasPrefix(s.Text, "URGENT") || !strings.Contains(s.Text, "bk_1, Ana") {
		t.Errorf("on-call SMS to %s: %q", s.To, s.Text)
	}

	for round := 1; round <= 2; round++ { // nobody resolves it: again, and again
		tb.clock.Add(every)
		if err := tb.inbox.Handle(ctx, check.ref, aftercare.Run{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		if check = run(3); check.ref.Round != round+1 || !check.at.Equal(tb.clock.Now().Add(every)) {
			t.Fatalf("check %+v after round %d", check, round)
		}
	}
	if n, m := len(tb.email.all()), len(tb.sms.all()); n != 3 || m != 3 || !strings.Contains(tb.email.all()[2].Subject, "still open, alert 3") {
		t.Fatalf("%d emails and %d texts after two rounds, want 3 each", n, m)
	}
	if got, _ := tb.inbox.Get(ctx, item.ID); got.Alerts != 6 {
		t.Errorf("item counts %d alerts, want 6", got.Alerts)
	}

	if _, err := tb.inbox.Resolve(ctx, item.ID, "Dr Ruiz", "called her: sent to the emergency room"); err != nil {
		t.Fatal(err)
	}
	tb.clock.Add(every)
	if err := tb.inbox.Handle(ctx, check.ref, aftercare.Run{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	run(0)
	if n := len(tb.email.all()); n != 3 {
		t.Errorf("%d emails after the item was resolved, want no more", n)
	}
	got, _ := tb.inbox.Get(ctx, item.ID)
	if got.Status != aftercare.InboxResolved || got.ResolvedBy != "Dr Ruiz" || got.Note == "" {
		t.Errorf("resolved item %+v", got)
	}
	if st, err := tb.store.InboxStats(ctx); err != nil || st.OpenUrgent != 0 {
		t.Errorf("stats %+v, %v; want no open urgent item", st, err)
	}
}

// TestList: open items come urgent first, a page at a time.
func TestList(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	texts := []string{"question 1", "my eyelid droops", "question 2", "I have a fever", "question 3"}
	for i, text := range texts {
		tb.clock.Add(time.Minute)
		tb.receive(t, "SM"+string(rune('a'+i)), "+15555550199", text)
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		items, next, err := tb.inbox.List(ctx, aftercare.InboxFilter{Status: aftercare.InboxOpen}, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			got = append(got, it.Text)
		}
		if next == "" || page > 5 {
			break
		}
		cursor = next
	}
	want := "I have a fever|my eyelid droops|question 3|question 2|question 1"
	if strings.Join(got, "|") != want {
		t.Errorf("open items %q, want %q", strings.Join(got, "|"), want)
	}
	urgent, _, _ := tb.inbox.List(ctx, aftercare.InboxFilter{Status: aftercare.InboxOpen, Urgency: aftercare.Urgent}, "", 10)
	if len(urgent) != 2 {
		t.Errorf("%d urgent items, want 2", len(urgent))
	}
	if _, _, err := tb.inbox.List(ctx, aftercare.InboxFilter{}, "nonsense", 10); aftercare.ErrorCode(err) != aftercare.EINVALID {
		t.Errorf("a bad cursor: %v, want EINVALID", err)
	}
}

// TestOptOutFromTheInbox: staff judge a text to be an opt-out.
func TestOptOutFromTheInbox(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.book(t, "bk_1", tuesday10.Add(-time.Hour))
	_, item := tb.receive(t, "SM1", patient, "I'd rather you didn't text me about this anymore")
	item, err := tb.inbox.OptOut(context.Background(), item.ID, "front desk")
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := tb.store.OptedOut(context.Background(), patient); !out || !strings.Contains(item.Action, "at the clinic's request (front desk)") {
		t.Errorf("opted out %v, action %q", out, item.Action)
	}
	rec, _ := tb.store.Get(context.Background(), "bk_1")
	for _, m := range rec.Messages {
		if m.Channel == aftercare.SMS && m.Step != "consent" && m.Status != aftercare.StatusSuppressed {
			t.Errorf("%s/sms = %s after the opt-out", m.Step, m.Status)
		}
	}
	// The trail names who asked, not the patient.
	for _, e := range rec.History {
		if e.Kind == aftercare.EventSuppressed && (e.By != "front desk" || strings.Contains(e.Detail, "replied STOP")) {
			t.Errorf("suppressed entry by %q: %q, want by front desk at the clinic's request", e.By, e.Detail)
		}
	}
	if item.OptedOutAt == nil {
		t.Error("the item does not say when it opted the number out")
	}
}

// TestTextEncryptedAtRest: the patient's words and number are in no Redis
// value in plain text.
func TestTextEncryptedAtRest(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.book(t, "bk_1", tuesday10.Add(-time.Hour))
	tb.receive(t, "SM1", patient, "my eyelid droops since yesterday")
	ctx := context.Background()
	for _, key := range tb.rdb.Keys(ctx, "*").Val() {
		dump := tb.rdb.Dump(ctx, key).Val()
		for _, secret := range []string{"eyelid", "5555550123"} {
			if strings.Contains(dump, secret) || strings.Contains(key, secret) {
				t.Errorf("key %s holds %q in plain text", key, secret)
			}
		}
	}
}

// TestProblemsReachAPerson: a safety text whose retries ran out, with no
// fallback (the patient gave no email), ends failed with the reason, and
// becomes one urgent delivery item that alerts the clinic; told twice, it is
// still one item. A non-clinical step's unknown outcome is a normal item.
func TestProblemsReachAPerson(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	protocols := tb.tellProblems()
	tb.book(t, "bk_p", tuesday10.Add(-time.Hour))
	renderer, _ := messages.New(tb.clinic, protocols, messages.Links(fixture.Links(t)))
	down := &sender{err: &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:20500", Err: errors.New("internal server error")}}
	w := worker.New(worker.Config{Store: tb.store, Renderer: renderer, SMS: down, Email: tb.email, Protocols: protocols,
		Clinic: tb.clinic, Followups: tb.sched, Now: tb.clock.Now})

	rec, err := tb.store.Get(ctx, "bk_p")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := rec.Message("upright", aftercare.SMS)
	tb.clock.Add(m.SendAt.Sub(tb.clock.Now()))
	ref := m.Ref("bk_p", rec.Version)
	for _, last := range []bool{false, true} {
		err := w.Handle(ctx, ref, aftercare.Run{Attempt: 25, Last: last})
		if last != errors.Is(err, aftercare.ErrFinal) {
			t.Fatalf("Handle (last %v) = %v", last, err)
		}
	}
	rec, _ = tb.store.Get(ctx, "bk_p")
	if m, _ := rec.Message("upright", aftercare.SMS); m.Status != aftercare.StatusFailed || !strings.HasPrefix(m.Error, "retries exhausted: twilio:20500") {
		t.Fatalf("upright SMS %s (%q), want failed: retries exhausted", m.Status, m.Error)
	}
	items, _, err := tb.inbox.List(ctx, aftercare.InboxFilter{}, "", 10)
	if err != nil || len(items) != 1 {
		t.Fatalf("inbox = %+v, %v; want one item", items, err)
	}
	item := items[0]
	if item.Kind != aftercare.InboxDelivery || item.Urgency != aftercare.Urgent || item.Step != "upright" ||
		item.MessageStatus != aftercare.StatusFailed || !strings.Contains(item.Text, "retries exhausted") {
		t.Errorf("item %+v, want an urgent delivery item for the failed upright text", item)
	}
	if n := len(tb.alerts.take()); n == 0 {
		t.Error("no alert planned for the item")
	}

	// Told again (a second follow-up of the same end): still one item.
	if err := tb.sched.Ended(ctx, ref, aftercare.StatusFailed, "retries exhausted: twilio:20500"); err != nil {
		t.Fatal(err)
	}
	// A reminder whose outcome is unknown is worth a look, not a call. It
	// comes a minute later, so it lists first (the newest first).
	tb.clock.Add(time.Minute)
	reminder := aftercare.MessageRef{BookingID: "bk_p", Version: rec.Version, Step: "reminder", Channel: aftercare.SMS}
	if err := tb.inbox.Report(ctx, aftercare.Problem{Ref: reminder, Status: aftercare.StatusOutcomeUnknown, Reason: "twilio:no-answer"}); err != nil {
		t.Fatal(err)
	}
	items, _, _ = tb.inbox.List(ctx, aftercare.InboxFilter{}, "", 10)
	if len(items) != 2 || items[0].Step != "reminder" || items[0].Urgency != aftercare.Normal {
		for _, it := range items {
			t.Logf("item %s step %s urgency %s at %s", it.ID, it.Step, it.Urgency, it.ReceivedAt)
		}
		t.Errorf("inbox has %d items, want the upright item once and a normal reminder item first", len(items))
	}
}

// TestExpiredWhenBookedReachesAPerson: a booking made too late for its
// consent and safety texts (here, after the visit) tells a person at once,
// and a repeat of the same request tells nobody twice.
func TestExpiredWhenBookedReachesAPerson(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.tellProblems()
	b := aftercare.Booking{ID: "bk_late", Treatment: "botox", AppointmentAt: tb.clock.Now().Add(-26 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: patient, Timezone: "America/New_York", Locale: "en", SMSOptIn: true}}
	for range 2 {
		if _, _, err := tb.sched.Book(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	items, _, err := tb.inbox.List(ctx, aftercare.InboxFilter{}, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]int{}
	for _, it := range items {
		if it.Kind != aftercare.InboxDelivery || it.MessageStatus != aftercare.StatusExpired || it.Urgency != aftercare.Urgent {
			t.Errorf("item %s: %s %s %s, want an urgent delivery item for an expired message", it.ID, it.Kind, it.MessageStatus, it.Urgency)
		}
		steps[it.Step]++
	}
	for _, step := range []string{"consent", "upright", "lie_down"} {
		if steps[step] != 1 {
			t.Errorf("%d items for the expired %s text, want 1 (items by step: %v)", steps[step], step, steps)
		}
	}
}

// TestProblemSettledBySend: an urgent delivery item stops alerting once its
// step reaches the patient after all (here a resend that went out): the
// next check resolves it, saying how, and plans no more alerts. Until
// then, checks alert again.
func TestProblemSettledBySend(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.tellProblems()
	tb.book(t, "bk_s", tuesday10.Add(-time.Hour))
	failed := aftercare.MessageRef{BookingID: "bk_s", Version: 1, Step: "upright", Channel: aftercare.SMS}
	tb.rdb.HSet(ctx, redisstore.Key("bk_s"), "m:upright:sms", "failed")
	if err := tb.inbox.Report(ctx, aftercare.Problem{Ref: failed, Status: aftercare.StatusFailed, Reason: "twilio:21610", Clinical: true}); err != nil {
		t.Fatal(err)
	}
	items, _, _ := tb.inbox.List(ctx, aftercare.InboxFilter{}, "", 10)
	if len(items) != 1 || items[0].Urgency != aftercare.Urgent {
		t.Fatalf("items %+v, want one urgent item", items)
	}
	item := items[0]
	tb.alerts.take()
	check := func(round int) []planned {
		t.Helper()
		tb.clock.Add(tb.clinic.Alerts.ReescalateAfter)
		if err := tb.inbox.Handle(ctx, aftercare.AlertRef{ItemID: item.ID, Round: round}, aftercare.Run{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		return tb.alerts.take()
	}
	if planned := check(1); len(planned) == 0 {
		t.Fatal("the first check alerted no one, with the text still failed")
	}

	if _, err := tb.sched.Resend(ctx, "bk_s", "upright", aftercare.SMS, "front desk", "called her; number corrected"); err != nil {
		t.Fatal(err)
	}
	sentAt := tb.clock.Now().Add(time.Minute) // as the worker records a send
	tb.rdb.HSet(ctx, redisstore.Key("bk_s"), "m:upright:sms", "sent", "c:upright:sms", sentAt.UnixMilli())
	if planned := check(2); len(planned) != 0 {
		t.Errorf("a check after the resend went out planned %+v, want nothing", planned)
	}
	got, err := tb.inbox.Get(ctx, item.ID)
	if err != nil || got.Status != aftercare.InboxResolved || got.ResolvedBy != "aftercare" ||
		!strings.Contains(got.Note, "the upright reached the patient after all: its sms was sent") {
		t.Errorf("item after the resend = %+v, %v; want resolved by aftercare, saying how", got, err)
	}
}
