package webhook_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/aftercare/aftercare/webhook"
)

// queue records deliveries, refusing a task id twice as the task queue
// does.
type queue struct {
	mu  sync.Mutex
	ids map[string]bool
	got []aftercare.Delivery
}

func (q *queue) Deliver(_ context.Context, d aftercare.Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ids == nil {
		q.ids = map[string]bool{}
	}
	if !q.ids[d.TaskID()] {
		q.ids[d.TaskID()] = true
		q.got = append(q.got, d)
	}
	return nil
}

func (q *queue) types(t *testing.T) []string {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, d := range q.got {
		var n struct{ Type string }
		if err := json.Unmarshal(d.Body, &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Endpoint+" "+n.Type)
	}
	return out
}

// drain runs relay passes until nothing is due, moving the marks made
// before a change (due a moment later) to now.
func drain(t *testing.T, r *webhook.Relay, store *redisstore.Store) {
	t.Helper()
	for range 10 {
		if err := store.DueNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		n, err := r.Pass(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("the relay keeps finding work")
}

// relayBench is a store with events on, on a private redis-server, and a
// scheduler on it for the example clinic without quiet hours. failed hears
// of marks that fail; nil fails the test.
func relayBench(t *testing.T, failed func(member string, err error)) (*redis.Client, *redisstore.Store, *scheduler.Client) {
	t.Helper()
	rdb := redistest.Client(t)
	store := redisstore.New(rdb)
	if failed == nil {
		failed = func(m string, err error) { t.Errorf("mark %s: %v", m, err) }
	}
	store.RecordEvents(failed)
	protocols := fixture.Protocols(t)
	clinic := fixture.AnyHour(t)
	return rdb, store, scheduler.New(store, taskqueue.New(rdb), scheduler.Config{Protocols: protocols, Clinic: clinic})
}

// relayBooking is booking id, two days ahead.
func relayBooking(id string) aftercare.Booking {
	return aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: time.Now().Add(48 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", Locale: "en", SMSOptIn: true}}
}

// TestRelayHandsOverEachEventOnce: a booking's trail becomes its events
// once, for each endpoint that wants them, however often the relay runs;
// the worker's outcome unknown becomes message.outcome_unknown.
func TestRelayHandsOverEachEventOnce(t *testing.T) {
	ctx := context.Background()
	_, store, sched := relayBench(t, nil)
	q := &queue{}
	relay := webhook.NewRelay(webhook.RelayConfig{Outbox: store, Queue: q, Endpoints: []webhook.Endpoint{
		{Name: "all", URL: "https://crm.clinic.example/hook", Secrets: []string{secret}},
		{Name: "bookings", URL: "https://ops.clinic.example/hook", Secrets: []string{secret},
			Types: []aftercare.EventType{aftercare.TypeBookingScheduled}},
	}})

	b := relayBooking("bk_1")
	tl, _, err := sched.Book(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	drain(t, relay, store)
	drain(t, relay, store) // again: nothing new
	if got := q.types(t); len(got) != 2 || got[0] != "all booking.scheduled" || got[1] != "bookings booking.scheduled" {
		t.Fatalf("deliveries %v, want booking.scheduled to both endpoints", got)
	}

	// The worker claims the consent text and cannot tell whether Twilio
	// took it.
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: tl.Version, Step: aftercare.StepConsent, Channel: aftercare.SMS}
	for _, c := range []aftercare.Change{
		ref.Change(aftercare.StatusScheduled, aftercare.StatusSending, ""),
		ref.Change(aftercare.StatusSending, aftercare.StatusOutcomeUnknown, "twilio:no-answer"),
	} {
		if c.To.Status == aftercare.StatusOutcomeUnknown {
			c.Event = aftercare.Event{At: time.Now(), Kind: aftercare.EventSend, Step: ref.Step, Channel: ref.Channel, Number: 1,
				Outcome: aftercare.OutcomeUnknown, Detail: "twilio:no-answer"}
		}
		if ok, _, err := store.Transition(ctx, c); err != nil || !ok {
			t.Fatalf("transition to %s = %v, %v", c.To.Status, ok, err)
		}
	}
	// A second run that found the message settled already changes nothing,
	// and tells nothing.
	late := ref.Change(aftercare.StatusSending, aftercare.StatusExpired, "deadline passed")
	late.Event = aftercare.Event{At: time.Now(), Kind: aftercare.EventSend, Step: ref.Step, Channel: ref.Channel, Number: 2,
		Outcome: aftercare.OutcomeExpired}
	if ok, _, err := store.Transition(ctx, late); err != nil || ok {
		t.Fatalf("late transition = %v, %v; want unchanged", ok, err)
	}
	drain(t, relay, store)
	got := q.types(t)
	if len(got) != 3 || got[2] != "all message.outcome_unknown" {
		t.Fatalf("deliveries %v, want message.outcome_unknown to the endpoint that takes all", got)
	}
	var n aftercare.Notice
	if err := json.Unmarshal(q.got[2].Body, &n); err != nil || n.Data.ErrorCode != "twilio:no-answer" || n.Data.Sequence != 3 {
		t.Errorf("outcome unknown event %s, want error twilio:no-answer as the trail's third entry", q.got[2].Body)
	}
}

// TestAChangeDuringALeaseStaysDue: a change that lands while a relay holds
// its booking is not lost when the relay finishes.
func TestAChangeDuringALeaseStaysDue(t *testing.T) {
	ctx := context.Background()
	_, store, sched := relayBench(t, nil)
	b := relayBooking("bk_2")
	if _, _, err := sched.Book(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := store.DueNow(ctx); err != nil {
		t.Fatal(err)
	}
	due, err := store.DueEvents(ctx, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due = %v, %v", due, err)
	}
	// Cancelled while the relay holds the lease.
	if _, err := sched.Cancel(ctx, "bk_2", false); err != nil {
		t.Fatal(err)
	}
	if err := store.EventsDone(ctx, due[0]); err != nil {
		t.Fatal(err)
	}
	if err := store.DueNow(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := store.DueEvents(ctx, 10)
	if err != nil || len(again) != 1 || again[0].BookingID != "bk_2" {
		t.Errorf("due after the lease = %v, %v; want the booking again", again, err)
	}
}

// TestAFailedMarkIsToldNotFatal: a change whose mark fails is stored all
// the same, the failure is told, and the booking's next change hands over
// its whole trail.
func TestAFailedMarkIsToldNotFatal(t *testing.T) {
	ctx := context.Background()
	var failed []string
	rdb, store, sched := relayBench(t, func(m string, err error) { failed = append(failed, m) })
	rdb.Set(ctx, "aftercare:events:due", "not a sorted set", 0)
	b := relayBooking("bk_3")
	if _, _, err := sched.Book(ctx, b); err != nil {
		t.Fatalf("Book with the mark failing: %v", err)
	}
	if len(failed) == 0 || failed[0] != "b:bk_3" {
		t.Errorf("failed marks told: %v", failed)
	}
	rdb.Del(ctx, "aftercare:events:due")
	if _, err := sched.Cancel(ctx, "bk_3", false); err != nil {
		t.Fatal(err)
	}
	q := &queue{}
	relay := webhook.NewRelay(webhook.RelayConfig{Outbox: store, Queue: q, Endpoints: []webhook.Endpoint{
		{Name: "all", URL: "https://crm.clinic.example/hook", Secrets: []string{secret}}}})
	drain(t, relay, store)
	history, _ := store.Get(ctx, "bk_3")
	if got := q.types(t); len(got) < 2 || got[0] != "all booking.scheduled" || got[len(got)-1] != "all booking.cancelled" {
		t.Errorf("deliveries %v, want the booking's whole trail (%d entries), booked to cancelled", got, len(history.History))
	}
}
