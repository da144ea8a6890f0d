package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redisproc"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/aftercare/aftercare/worker"
)

// fakeSender records what it is asked to send and answers with err.
type fakeSender struct {
	mu   sync.Mutex
	sent []sent
	err  error
	// during, if set, runs in the middle of each send.
	during func()
}

type sent struct {
	msg aftercare.Outgoing
	at  time.Time
}

func (f *fakeSender) Send(_ context.Context, msg aftercare.Outgoing) (string, error) {
	if f.during != nil {
		f.during()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.sent = append(f.sent, sent{msg, time.Now()})
	return "P" + msg.ID, nil
}

func (f *fakeSender) calls() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.sent...)
}

var _ worker.Sender = (*fakeSender)(nil)

type testBundle struct {
	renderer *messages.Renderer
	rdb      *redis.Client
	store    *redisstore.Store
	sms      *fakeSender
	email    *fakeSender
	worker   *worker.Worker
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb := redistest.Client(t)
	protocols := fixture.Protocols(t)
	clinic := fixture.Clinic(t)
	renderer, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBundle{renderer: renderer, rdb: rdb, store: redisstore.New(rdb), sms: &fakeSender{}, email: &fakeSender{}}
	tb.worker = worker.New(worker.Config{Store: tb.store, Renderer: renderer, SMS: tb.sms, Email: tb.email})
	return tb
}

// book stores a booking whose consent messages are due at sendAt with the
// given deadline, and returns the ref of its consent SMS.
func (tb *testBundle) book(t *testing.T, sendAt, deadline time.Time) aftercare.MessageRef {
	t.Helper()
	b := aftercare.Booking{ID: "bk_w", Treatment: "botox", AppointmentAt: deadline, DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: "Europe/Madrid", Locale: "en", SMSOptIn: true, EmailOptIn: true}}
	rec := &aftercare.Record{Booking: b, Fingerprint: "fp", CreatedAt: time.Now(), Timeline: aftercare.Timeline{
		ID: b.ID, Version: 1, Status: aftercare.BookingScheduled, Messages: []aftercare.Message{
			{Step: "consent", Channel: aftercare.SMS, SendAt: sendAt, Deadline: deadline, Status: aftercare.StatusScheduled},
			{Step: "consent", Channel: aftercare.Email, SendAt: sendAt, Deadline: deadline, Status: aftercare.StatusScheduled},
		}}}
	if _, _, err := tb.store.Create(context.Background(), rec, deadline.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return aftercare.MessageRef{BookingID: b.ID, Version: 1, Step: "consent", Channel: aftercare.SMS}
}

func (tb *testBundle) process(ref aftercare.MessageRef) error {
	return tb.worker.Handle(context.Background(), ref, aftercare.Run{Attempt: 1})
}

func (tb *testBundle) message(t *testing.T, ref aftercare.MessageRef) aftercare.Message {
	t.Helper()
	rec, err := tb.store.Get(context.Background(), ref.BookingID)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := rec.Message(ref.Step, ref.Channel)
	return m
}

func TestSendOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))

	for range 3 { // asynq may run a task more than once
		if err := tb.process(ref); err != nil {
			t.Fatal(err)
		}
	}
	calls := tb.sms.calls()
	if len(calls) != 1 {
		t.Fatalf("%d sends, want 1", len(calls))
	}
	if c := calls[0].msg; c.ID != "bk_w:v1:consent:sms" || c.To != "+15555550123" || !strings.Contains(c.Text, "Ana") {
		t.Errorf("sent %+v", c)
	}
	if m := tb.message(t, ref); m.Status != aftercare.StatusSent || m.ProviderID != "Pbk_w:v1:consent:sms" {
		t.Errorf("message = %+v", m)
	}
}

func TestNotSent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef)
		want   aftercare.MessageStatus
	}{
		{"past deadline", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.Del(context.Background(), redisstore.Key(ref.BookingID))
			*ref = tb.book(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Minute))
		}, aftercare.StatusExpired},
		{"booking cancelled", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "status", "cancelled")
		}, aftercare.StatusScheduled},
		{"task of an older version", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "version", 2)
		}, aftercare.StatusScheduled},
		{"number replied STOP", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			if err := tb.store.SetOptOut(context.Background(), "+15555550123", true, time.Now()); err != nil {
				t.Fatal(err)
			}
		}, aftercare.StatusSuppressed},
		// A message found sending may have gone out before its worker
		// died: that is recorded, whatever happened since.
		{"earlier attempt died, then the number replied STOP", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "m:consent:sms", "sending")
			if err := tb.store.SetOptOut(context.Background(), "+15555550123", true, time.Now()); err != nil {
				t.Fatal(err)
			}
		}, aftercare.StatusOutcomeUnknown},
		{"earlier attempt died, then the deadline passed", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.Del(context.Background(), redisstore.Key(ref.BookingID))
			*ref = tb.book(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Minute))
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "m:consent:sms", "sending")
		}, aftercare.StatusOutcomeUnknown},
		{"earlier attempt died, then the booking was cancelled", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "m:consent:sms", "sending", "status", "cancelled")
		}, aftercare.StatusOutcomeUnknown},
		{"earlier attempt died while sending an SMS", func(t *testing.T, tb *testBundle, ref *aftercare.MessageRef) {
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "m:consent:sms", "sending")
		}, aftercare.StatusOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))
			tt.before(t, tb, &ref)
			// A message in doubt ends in failure: its task is not run again.
			err := tb.process(ref)
			if final := errors.Is(err, aftercare.ErrFinal); (err != nil && !final) || final != (tt.want == aftercare.StatusOutcomeUnknown) {
				t.Fatalf("Handle = %v", err)
			}
			if n := len(tb.sms.calls()); n != 0 {
				t.Fatalf("%d sends, want none", n)
			}
			if m := tb.message(t, ref); m.Status != tt.want {
				t.Errorf("status = %s, want %s", m.Status, tt.want)
			}
		})
	}
}

func TestRecordGone(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ref := aftercare.MessageRef{BookingID: "bk_gone", Version: 1, Step: "consent", Channel: aftercare.SMS}
	if err := tb.process(ref); err != nil || len(tb.sms.calls()) != 0 {
		t.Fatalf("process = %v, sends %d; want nil and none", err, len(tb.sms.calls()))
	}
}

// TestEmailNotResentAfterCrash: an email whose earlier attempt died
// mid-send may have reached the server; like a text, it is not sent again.
func TestEmailNotResentAfterCrash(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))
	ref.Channel = aftercare.Email
	tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "m:consent:email", "sending")
	if err := tb.process(ref); !errors.Is(err, aftercare.ErrFinal) {
		t.Fatalf("Handle = %v, want a final error", err)
	}
	if calls := tb.email.calls(); len(calls) != 0 {
		t.Fatalf("%d email sends, want none", len(calls))
	}
	if m := tb.message(t, ref); m.Status != aftercare.StatusOutcomeUnknown || !strings.Contains(m.Error, "stopped while sending") {
		t.Errorf("message = %s (%q), want outcome_unknown and why", m.Status, m.Error)
	}
}

func TestSendErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status aftercare.MessageStatus
		final  bool
	}{
		{"permanent", &aftercare.SendError{Class: aftercare.ErrPermanent, Code: "twilio:21211", Err: errors.New("invalid To")},
			aftercare.StatusFailed, true},
		{"transient", &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:20500", Err: errors.New("internal")},
			aftercare.StatusScheduled, false},
		{"rate limited", &aftercare.SendError{Class: aftercare.ErrRateLimited, Code: "twilio:20429", Err: errors.New("slow down")},
			aftercare.StatusScheduled, false},
		{"unclassified", errors.New("boom"), aftercare.StatusScheduled, false},
		{"no answer: may have been accepted", &aftercare.SendError{Class: aftercare.ErrUncertain, Code: "twilio:no-answer", Err: errors.New("timeout")},
			aftercare.StatusOutcomeUnknown, true},
		{"unsubscribed with the provider", &aftercare.SendError{Class: aftercare.ErrPermanent, Code: "twilio:21610",
			Err: fmt.Errorf("%w: twilio 21610", aftercare.ErrUnsubscribed)}, aftercare.StatusFailed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))
			tb.sms.err = tt.err
			err := tb.process(ref)
			if err == nil {
				t.Fatal("no error returned to asynq")
			}
			if got := errors.Is(err, aftercare.ErrFinal); got != tt.final {
				t.Errorf("final = %v, want %v (%v)", got, tt.final, err)
			}
			if !tt.final && !errors.Is(err, tt.err) {
				t.Errorf("Handle = %v, want the send error back, for asynq to retry by its class", err)
			}
			m := tb.message(t, ref)
			if m.Status != tt.status || m.Error == "" {
				t.Errorf("message = %+v, want status %s with the error recorded", m, tt.status)
			}
			out, _ := tb.store.OptedOut(context.Background(), "+15555550123")
			if want := errors.Is(tt.err, aftercare.ErrUnsubscribed); out != want {
				t.Errorf("opted out = %v, want %v", out, want)
			}

			// A transient failure is retried, and the retry sends.
			if !tt.final {
				tb.sms.err = nil
				if err := tb.process(ref); err != nil {
					t.Fatal(err)
				}
				if m := tb.message(t, ref); m.Status != aftercare.StatusSent || m.Error != "" {
					t.Errorf("after retry: %+v", m)
				}
			}
		})
	}
}

// TestHoldsEarlyTask: asynq keeps due times in whole seconds and may hand a
// task over early; the worker waits for the exact time.
func TestHoldsEarlyTask(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	due := time.Now().Add(400 * time.Millisecond)
	ref := tb.book(t, due, time.Now().Add(time.Hour))
	if err := tb.process(ref); err != nil {
		t.Fatal(err)
	}
	calls := tb.sms.calls()
	if len(calls) != 1 {
		t.Fatalf("%d sends", len(calls))
	}
	// Stored times have millisecond precision or better.
	if early := due.Sub(calls[0].at); early > time.Millisecond {
		t.Errorf("sent %s early", early)
	}
}

// racingStore runs a function right after the worker has read the booking
// and before it claims the message: the window in which a cancel races a
// send.
type racingStore struct {
	*redisstore.Store
	afterGet func()
}

func (s racingStore) Get(ctx context.Context, id string) (*aftercare.Record, error) {
	rec, err := s.Store.Get(ctx, id)
	s.afterGet()
	return rec, err
}

// TestCancelRacesSend interleaves a cancel with a running send on a real
// Redis: a cancel that lands before the claim wins and nothing is sent; a
// cancel that lands after the claim cannot unsend, and the message is
// recorded as sent.
func TestCancelRacesSend(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		duringGo bool // cancel during the provider call instead of before the claim
		sends    int
		status   aftercare.MessageStatus
	}{
		{"cancel before the claim", false, 0, aftercare.StatusCancelled},
		{"cancel while sending", true, 1, aftercare.StatusSent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			protocols, _ := protocol.Builtin()
			sched := scheduler.New(tb.store, taskqueue.New(tb.rdb), scheduler.Config{Protocols: protocols})
			b := aftercare.Booking{ID: "bk_race", Treatment: "botox", AppointmentAt: time.Now().Add(48 * time.Hour),
				Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "UTC", SMSOptIn: true}}
			if _, _, err := sched.Book(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			cancel := func() {
				if _, err := sched.Cancel(context.Background(), "bk_race", false); err != nil {
					t.Error(err)
				}
			}
			store := racingStore{Store: tb.store, afterGet: func() {}}
			if tt.duringGo {
				tb.sms.during = cancel
			} else {
				store.afterGet = cancel
			}
			w := worker.New(worker.Config{Store: store, Renderer: tb.renderer, SMS: tb.sms, Email: tb.email})

			ref := aftercare.MessageRef{BookingID: "bk_race", Version: 1, Step: "consent", Channel: aftercare.SMS}
			if err := w.Handle(context.Background(), ref, aftercare.Run{Attempt: 1}); err != nil {
				t.Fatal(err)
			}
			if n := len(tb.sms.calls()); n != tt.sends {
				t.Errorf("%d sends, want %d", n, tt.sends)
			}
			tl, err := sched.Get(context.Background(), "bk_race")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := (&aftercare.Record{Timeline: *tl}).Message("consent", aftercare.SMS)
			if tl.Status != aftercare.BookingCancelled || m.Status != tt.status {
				t.Errorf("booking %s, consent %s; want cancelled, %s", tl.Status, m.Status, tt.status)
			}
		})
	}
}

// TestQuietHoursAtSendTime: the worker applies each step's quiet-hour
// policy again when the message is due, on the patient's clock.
func TestQuietHoursAtSendTime(t *testing.T) {
	t.Parallel()
	madrid, _ := time.LoadLocation("Europe/Madrid")
	night := time.Date(2026, 12, 1, 23, 0, 0, 0, madrid)
	morning := time.Date(2026, 12, 2, 8, 0, 0, 0, madrid)
	tests := []struct {
		step     string
		deadline time.Duration
		sends    int
		status   aftercare.MessageStatus
		deferred bool
	}{
		{"upright", time.Hour, 1, aftercare.StatusSent, false},                           // ignore: clinical
		{"lie_down", time.Hour, 0, aftercare.StatusSkipped, false},                       // skip
		{"day1", 12 * time.Hour, 0, aftercare.StatusScheduled, true},                     // defer to 08:00
		{"day3", time.Hour, 0, aftercare.StatusExpired, false},                           // defer, but 08:00 is too late
		{aftercare.StepCancellation, 12 * time.Hour, 0, aftercare.StatusScheduled, true}, // in no protocol: defer
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			protocols, _ := protocol.Builtin()
			w := worker.New(worker.Config{Store: tb.store, Renderer: tb.renderer, SMS: tb.sms, Email: tb.email,
				Protocols: protocols, Clinic: aftercare.Clinic{QuietHours: aftercare.QuietHours{Start: "21:00", End: "08:00"}},
				Now: func() time.Time { return night }})
			b := aftercare.Booking{ID: "bk_q", Treatment: "botox", AppointmentAt: night.Add(-time.Hour),
				Patient: aftercare.Patient{FirstName: "Ana", Phone: "+34612345678", Timezone: "Europe/Madrid", SMSOptIn: true}}
			rec := &aftercare.Record{Booking: b, Fingerprint: "fp", CreatedAt: night, Timeline: aftercare.Timeline{
				ID: b.ID, Version: 1, Status: aftercare.BookingScheduled, Messages: []aftercare.Message{
					{Step: tt.step, Channel: aftercare.SMS, SendAt: night, Deadline: night.Add(tt.deadline), Status: aftercare.StatusScheduled},
				}}}
			if _, _, err := tb.store.Create(context.Background(), rec, night.Add(48*time.Hour)); err != nil {
				t.Fatal(err)
			}
			ref := aftercare.MessageRef{BookingID: b.ID, Version: 1, Step: tt.step, Channel: aftercare.SMS}
			err := w.Handle(context.Background(), ref, aftercare.Run{Attempt: 1})
			d, deferred := errors.AsType[*aftercare.Deferred](err)
			if deferred != tt.deferred || (!deferred && err != nil) {
				t.Fatalf("ProcessTask = %v, want deferred %v", err, tt.deferred)
			}
			if deferred {
				if !d.Until.Equal(morning) {
					t.Errorf("deferred until %s, want %s", d.Until, morning)
				}
			}
			if n := len(tb.sms.calls()); n != tt.sends {
				t.Errorf("%d sends, want %d", n, tt.sends)
			}
			if m := tb.message(t, ref); m.Status != tt.status {
				t.Errorf("status = %s, want %s", m.Status, tt.status)
			}
		})
	}
}

// followups records what the worker tells the scheduler.
type followups struct {
	mu    sync.Mutex
	ended []string
	sent  []string
}

func (f *followups) Ended(_ context.Context, ref aftercare.MessageRef, st aftercare.MessageStatus, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = append(f.ended, ref.Step+"/"+string(ref.Channel)+" "+string(st)+": "+reason)
	return nil
}

func (f *followups) Sent(_ context.Context, ref aftercare.MessageRef, providerID string, _ []aftercare.Receipt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, ref.Step+"/"+string(ref.Channel)+" "+providerID)
	return nil
}

// TestLastRunFails: on a task's last run, a transient failure ends the
// message failed ("retries exhausted"), not scheduled for ever, and the
// scheduler hears of it; a send is reported too.
func TestLastRunFails(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	f := &followups{}
	w := worker.New(worker.Config{Store: tb.store, Renderer: tb.renderer, SMS: tb.sms, Email: tb.email, Followups: f})
	ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))
	tb.sms.err = &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:20500", Err: errors.New("internal")}
	if err := w.Handle(context.Background(), ref, aftercare.Run{Attempt: 26, Last: true}); !errors.Is(err, aftercare.ErrFinal) {
		t.Fatalf("Handle = %v, want a final error", err)
	}
	if m := tb.message(t, ref); m.Status != aftercare.StatusFailed || !strings.HasPrefix(m.Error, "retries exhausted: twilio:20500") {
		t.Errorf("message %s (%q), want failed, retries exhausted", m.Status, m.Error)
	}
	email := ref
	email.Channel = aftercare.Email
	if err := w.Handle(context.Background(), email, aftercare.Run{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(f.ended) != 1 || !strings.Contains(f.ended[0], "consent/sms failed: retries exhausted") || len(f.sent) != 1 || !strings.HasPrefix(f.sent[0], "consent/email P") {
		t.Errorf("followups: ended %q, sent %q", f.ended, f.sent)
	}
}

// finder answers Find as the provider would.
type finder struct {
	mu    sync.Mutex
	sid   string
	err   error
	asked []time.Time
}

func (f *finder) Find(_ context.Context, _ string, bodies []string, since time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, since)
	return f.sid, f.err
}

// TestTextInDoubt: a text left sending is settled by asking the provider,
// once no request of its claim can still reach it: found, it is sent with
// the provider's id; not found, it is sent now, once; a provider that
// cannot be asked is asked again later.
func TestTextInDoubt(t *testing.T) {
	t.Parallel()
	claim := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	tests := []struct {
		name    string
		f       *finder
		now     time.Time
		sends   int
		status  aftercare.MessageStatus
		id      string
		errKind string // "deferred", "retry" or ""
	}{
		{"too soon to ask", &finder{}, claim.Add(10 * time.Second), 0, aftercare.StatusSending, "", "deferred"},
		{"the provider has it", &finder{sid: "SMfound"}, claim.Add(40 * time.Second), 0, aftercare.StatusSent, "SMfound", ""},
		{"the provider never had it", &finder{}, claim.Add(40 * time.Second), 1, aftercare.StatusSent, "Pbk_w:v1:consent:sms", ""},
		{"the provider cannot be asked", &finder{err: &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:20500", Err: errors.New("down")}},
			claim.Add(40 * time.Second), 0, aftercare.StatusSending, "", "retry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			ref := tb.book(t, claim.Add(-time.Second), claim.Add(time.Hour))
			tb.rdb.HSet(context.Background(), redisstore.Key(ref.BookingID), "m:consent:sms", "sending", "c:consent:sms", claim.UnixMilli())
			w := worker.New(worker.Config{Store: tb.store, Renderer: tb.renderer, SMS: tb.sms, Email: tb.email, Finder: tt.f,
				Now: func() time.Time { return tt.now }})
			err := w.Handle(context.Background(), ref, aftercare.Run{Attempt: 2})
			_, deferred := errors.AsType[*aftercare.Deferred](err)
			switch tt.errKind {
			case "deferred":
				if !deferred {
					t.Errorf("Handle = %v, want it deferred until it can ask", err)
				}
			case "retry":
				if err == nil || deferred || errors.Is(err, aftercare.ErrFinal) {
					t.Errorf("Handle = %v, want a retry", err)
				}
			default:
				if err != nil {
					t.Errorf("Handle = %v", err)
				}
			}
			if n := len(tb.sms.calls()); n != tt.sends {
				t.Errorf("%d sends, want %d", n, tt.sends)
			}
			m := tb.message(t, ref)
			if m.Status != tt.status || m.ProviderID != tt.id {
				t.Errorf("message %s %q, want %s %q", m.Status, m.ProviderID, tt.status, tt.id)
			}
			if asked := len(tt.f.asked); (tt.errKind == "deferred") != (asked == 0) || (asked > 0 && tt.f.asked[0].After(claim)) {
				t.Errorf("asked the provider %v, want once unless too soon, about texts since before the claim", tt.f.asked)
			}
		})
	}
}

// outcomes counts the outcomes a worker reports to its metrics.
type outcomes struct {
	mu  sync.Mutex
	got []aftercare.Outcome
}

func (o *outcomes) Attempt(_ string, _ aftercare.Channel, outcome aftercare.Outcome, _, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, outcome)
}

// TestFailedRecordKeepsProviderID: Redis goes away while the provider takes
// an email, so the run cannot record it; the run asks for another, which
// records the email sent with the provider id the first one held, rather
// than "outcome unknown". It was sent once and is counted once.
func TestFailedRecordKeepsProviderID(t *testing.T) {
	t.Parallel()
	srv, err := redisproc.StartServer(t.TempDir(), "--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		t.Skipf("no redis-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	tb := setup(t)
	tb.rdb, tb.store = rdb, redisstore.New(rdb)
	m := &outcomes{}
	w := worker.New(worker.Config{Store: tb.store, Renderer: tb.renderer, SMS: tb.sms, Email: tb.email,
		Metrics: m, RecordFor: 300 * time.Millisecond})
	ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))
	ref.Channel = aftercare.Email
	tb.email.during = srv.Stop

	err = w.Handle(context.Background(), ref, aftercare.Run{Attempt: 1})
	if err == nil || errors.Is(err, aftercare.ErrFinal) {
		t.Fatalf("Handle with Redis gone = %v, want an error that asks for another run", err)
	}
	tb.email.during = nil
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if got := tb.message(t, ref); got.Status != aftercare.StatusSending {
		t.Fatalf("after the failed record: %s, want sending", got.Status)
	}
	if err := w.Handle(context.Background(), ref, aftercare.Run{Attempt: 2}); err != nil {
		t.Fatalf("the next run: %v", err)
	}
	got := tb.message(t, ref)
	if got.Status != aftercare.StatusSent || got.ProviderID != "P"+ref.TaskID() {
		t.Errorf("message %s with provider id %q, want sent with P%s", got.Status, got.ProviderID, ref.TaskID())
	}
	if n := len(tb.email.calls()); n != 1 {
		t.Errorf("%d sends, want 1", n)
	}
	if len(m.got) != 1 || m.got[0] != aftercare.OutcomeSent {
		t.Errorf("metrics counted %v, want one sent", m.got)
	}
}

// TestErrorsForTheQueueAreRedacted: asynq keeps a run's error on the task,
// where the dashboard shows it; a provider's words quoting the patient's
// address are redacted first (the domain stays, as everywhere), and the
// error still says what kind it is.
func TestErrorsForTheQueueAreRedacted(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ref := tb.book(t, time.Now(), time.Now().Add(time.Hour))
	ref.Channel = aftercare.Email
	tb.email.err = &aftercare.SendError{Class: aftercare.ErrTransient, Code: "smtp:451",
		Err: errors.New("451 4.3.0 mailbox maría@bücher.example busy")}
	err := tb.process(ref)
	if err == nil || strings.Contains(err.Error(), "maría") {
		t.Fatalf("Handle = %v, want an error without the address", err)
	}
	if !errors.Is(err, aftercare.ErrTransient) || !strings.Contains(err.Error(), "smtp:451") {
		t.Errorf("Handle = %v, want a transient error with its code", err)
	}
}
