package scheduler_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/redis/go-redis/v9"
)

type followBundle struct {
	rdb      redis.UniversalClient
	store    *redisstore.Store
	client   *scheduler.Client
	mu       sync.Mutex
	problems []aftercare.Problem
}

func followSetup(t *testing.T) *followBundle {
	t.Helper()
	rdb := redistest.Client(t)
	protocols := fixture.Protocols(t)
	clinic := fixture.AnyHour(t)
	fb := &followBundle{rdb: rdb, store: redisstore.New(rdb)}
	fb.client = scheduler.New(fb.store, taskqueue.New(rdb), scheduler.Config{Protocols: protocols, Clinic: clinic,
		Problems: scheduler.ProblemsFunc(func(_ context.Context, p aftercare.Problem) error {
			fb.mu.Lock()
			defer fb.mu.Unlock()
			fb.problems = append(fb.problems, p)
			return nil
		})})
	return fb
}

func (fb *followBundle) book(t *testing.T, sms, email bool, end time.Time) *aftercare.Record {
	t.Helper()
	b := aftercare.Booking{ID: "bk_f", Treatment: "botox", AppointmentAt: end, DurationMinutes: 0,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: "America/New_York", SMSOptIn: sms, EmailOptIn: email}}
	if _, _, err := fb.client.Book(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	rec, err := fb.store.Get(context.Background(), "bk_f")
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func (fb *followBundle) message(t *testing.T, step string, ch aftercare.Channel) (aftercare.Message, bool) {
	t.Helper()
	rec, err := fb.store.Get(context.Background(), "bk_f")
	if err != nil {
		t.Fatal(err)
	}
	return rec.Message(step, ch)
}

// setStatus puts a message of bk_f's current version in a status, as a
// worker would have.
func (fb *followBundle) setStatus(t *testing.T, step string, ch aftercare.Channel, from, to aftercare.MessageStatus, providerID string) aftercare.MessageRef {
	t.Helper()
	rec, err := fb.store.Get(context.Background(), "bk_f")
	if err != nil {
		t.Fatal(err)
	}
	ref := aftercare.MessageRef{BookingID: "bk_f", Version: rec.Version, Step: step, Channel: ch}
	c := ref.Change(from, to, "test")
	c.ProviderID = providerID
	if ok, _, err := fb.store.Transition(context.Background(), c); err != nil || !ok {
		t.Fatalf("Transition %s -> %s = %v, %v", from, to, ok, err)
	}
	return ref
}

// TestEndedFallsBack: a clinical step's text that cannot reach the patient
// goes by email instead, once; the clinic is told only when nothing of the
// step reaches the patient, or the outcome is unknown.
func TestEndedFallsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	fb.book(t, true, true, time.Now().Add(2*time.Hour))
	fb.setStatus(t, "upright", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusSending, "")
	ref := fb.setStatus(t, "upright", aftercare.SMS, aftercare.StatusSending, aftercare.StatusFailed, "")
	for range 2 { // told twice, falls back once
		if err := fb.client.Ended(ctx, ref, aftercare.StatusFailed, "twilio:21211: invalid To number"); err != nil {
			t.Fatal(err)
		}
	}
	m, ok := fb.message(t, "upright", aftercare.Email)
	if !ok || m.Status != aftercare.StatusScheduled || !strings.Contains(m.Note, "because the sms was failed") {
		t.Fatalf("upright by email = %+v, %v; want it scheduled as the fallback", m, ok)
	}
	if len(fb.problems) != 0 {
		t.Errorf("problems %+v: the fallback reaches the patient", fb.problems)
	}

	// day14 has no fallback, but goes by email too: a failed text is not a
	// problem. An outcome unknown always is.
	fb.setStatus(t, "day14", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusSending, "")
	day14 := fb.setStatus(t, "day14", aftercare.SMS, aftercare.StatusSending, aftercare.StatusOutcomeUnknown, "")
	if err := fb.client.Ended(ctx, day14, aftercare.StatusOutcomeUnknown, "twilio:no-answer"); err != nil {
		t.Fatal(err)
	}
	if len(fb.problems) != 1 || fb.problems[0].Status != aftercare.StatusOutcomeUnknown || fb.problems[0].Ref.Step != "day14" {
		t.Errorf("problems %+v, want the outcome unknown", fb.problems)
	}
}

// TestEndedReportsWhatReachesNobody: a text-only patient's clinical step
// that failed has no fallback: the clinic is told.
func TestEndedReportsWhatReachesNobody(t *testing.T) {
	t.Parallel()
	fb := followSetup(t)
	fb.book(t, true, false, time.Now().Add(2*time.Hour))
	fb.setStatus(t, "day3", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusSending, "")
	ref := fb.setStatus(t, "day3", aftercare.SMS, aftercare.StatusSending, aftercare.StatusFailed, "")
	if err := fb.client.Ended(context.Background(), ref, aftercare.StatusFailed, "retries exhausted: twilio:20500"); err != nil {
		t.Fatal(err)
	}
	if len(fb.problems) != 1 || !fb.problems[0].Clinical || fb.problems[0].Reason != "retries exhausted: twilio:20500" {
		t.Errorf("problems %+v, want the failed clinical step", fb.problems)
	}
}

// TestStopFallsBack: after STOP, the clinical steps go by email; the
// others are suppressed.
func TestStopFallsBack(t *testing.T) {
	t.Parallel()
	fb := followSetup(t)
	fb.book(t, true, true, time.Now().Add(48*time.Hour))
	if err := fb.client.OptOut(context.Background(), "+15555550123", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"upright", "lie_down", "day3"} {
		if m, ok := fb.message(t, step, aftercare.Email); !ok || m.Status != aftercare.StatusScheduled {
			t.Errorf("%s by email = %+v, %v; want the fallback scheduled", step, m, ok)
		}
		if m, _ := fb.message(t, step, aftercare.SMS); m.Status != aftercare.StatusSuppressed {
			t.Errorf("%s by SMS = %s, want suppressed", step, m.Status)
		}
	}
}

// TestEarlyReceipt: Twilio's "undelivered" that comes before the send is
// recorded is kept, and applied when it is: the text fails and the step
// falls back to email.
func TestEarlyReceipt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	fb.book(t, true, true, time.Now().Add(2*time.Hour))
	ref := fb.setStatus(t, "upright", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusSending, "")
	receipt := aftercare.Receipt{Key: "SMearly:undelivered", ProviderID: "SMearly", Status: aftercare.StatusFailed, Reason: "twilio:30003: carrier undelivered"}
	if err := fb.client.Receipt(ctx, receipt); err != nil {
		t.Fatal(err)
	}
	if m, _ := fb.message(t, "upright", aftercare.SMS); m.Status != aftercare.StatusSending {
		t.Fatalf("upright %s before the send was recorded", m.Status)
	}
	// Recording the send reads the early receipt; Sent applies it.
	sent := ref.Change(aftercare.StatusSending, aftercare.StatusSent, "")
	sent.ProviderID = "SMearly"
	ok, early, err := fb.store.Transition(ctx, sent)
	if err != nil || !ok || len(early) != 1 || early[0] != receipt {
		t.Fatalf("Transition = %v, %+v, %v; want the early receipt", ok, early, err)
	}
	if err := fb.client.Sent(ctx, ref, "SMearly", early); err != nil {
		t.Fatal(err)
	}
	if m, _ := fb.message(t, "upright", aftercare.SMS); m.Status != aftercare.StatusFailed || !strings.Contains(m.Error, "30003") {
		t.Errorf("upright SMS %s (%q), want failed with the carrier's code", m.Status, m.Error)
	}
	if m, ok := fb.message(t, "upright", aftercare.Email); !ok || m.Status != aftercare.StatusScheduled {
		t.Errorf("no fallback after the early receipt: %+v", m)
	}
	// Twilio's retry of the same receipt changes nothing more, and the
	// applied receipt is no longer kept.
	if err := fb.client.Receipt(ctx, receipt); err != nil {
		t.Fatal(err)
	}
	if n, err := fb.rdb.Exists(ctx, "aftercare:receipt:kept:{SMearly}").Result(); err != nil || n != 0 {
		t.Errorf("receipts still kept after they were applied: %d, %v", n, err)
	}
}

// TestCancelAfterTheVisit: a treated booking is not cancelled by accident;
// its aftercare stops on purpose, with a reason and no notice.
func TestCancelAfterTheVisit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	fb.book(t, true, true, time.Now().Add(2*time.Hour))
	if _, err := fb.client.Treated(ctx, "bk_f", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := fb.client.Cancel(ctx, "bk_f", true); aftercare.ErrorCode(err) != aftercare.ECONFLICT || !strings.Contains(err.Error(), "was treated") {
		t.Fatalf("Cancel of a treated booking = %v, want ECONFLICT saying why", err)
	}
	if _, err := fb.client.StopAftercare(ctx, "bk_f", ""); aftercare.ErrorCode(err) != aftercare.EINVALID {
		t.Errorf("StopAftercare without a reason = %v, want EINVALID", err)
	}
	tl, err := fb.client.StopAftercare(ctx, "bk_f", "the patient moved abroad")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range tl.Messages {
		if m.Step == aftercare.StepCancellation {
			t.Error("a cancellation notice was planned")
		}
		if m.Status == aftercare.StatusCancelled && !strings.Contains(m.Error, "the patient moved abroad") {
			t.Errorf("%s/%s cancelled without the reason: %q", m.Step, m.Channel, m.Error)
		}
	}
}

// TestRescheduleKeepsWhatMayHaveGone: a reschedule does not plan again a
// message whose outcome is unknown, nor one that failed for good, unless
// its contact changed.
func TestRescheduleKeepsWhatMayHaveGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	rec := fb.book(t, true, true, time.Now().Add(72*time.Hour))
	fb.setStatus(t, "day1", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusSending, "")
	fb.setStatus(t, "day1", aftercare.SMS, aftercare.StatusSending, aftercare.StatusFailed, "")
	fb.setStatus(t, "day1", aftercare.Email, aftercare.StatusScheduled, aftercare.StatusSending, "")
	fb.setStatus(t, "day1", aftercare.Email, aftercare.StatusSending, aftercare.StatusOutcomeUnknown, "")

	moved := rec.Booking
	moved.AppointmentAt = moved.AppointmentAt.Add(24 * time.Hour)
	moved.TreatedAt = nil
	tl, _, err := fb.client.Reschedule(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	status := func(tl *aftercare.Timeline, ch aftercare.Channel) aftercare.MessageStatus {
		m, _ := (&aftercare.Record{Timeline: *tl}).Message("day1", ch)
		return m.Status
	}
	if s, e := status(tl, aftercare.SMS), status(tl, aftercare.Email); s != aftercare.StatusFailed || e != aftercare.StatusOutcomeUnknown {
		t.Errorf("after a reschedule: day1 sms %s, email %s; want them kept", s, e)
	}
	moved.Patient.Phone = "+15555550177" // a new number is worth a try
	if tl, _, err = fb.client.Reschedule(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if s, e := status(tl, aftercare.SMS), status(tl, aftercare.Email); s != aftercare.StatusScheduled || e != aftercare.StatusOutcomeUnknown {
		t.Errorf("after a new number: day1 sms %s, email %s; want the text planned again", s, e)
	}
}

// TestRescheduleSendsConsentAgain: a new version retires the consent link,
// so a consent the patient has not acknowledged goes again with the new
// one; an acknowledged one does not.
func TestRescheduleSendsConsentAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	rec := fb.book(t, true, true, time.Now().Add(72*time.Hour))
	for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
		fb.setStatus(t, "consent", ch, aftercare.StatusScheduled, aftercare.StatusSending, "")
		fb.setStatus(t, "consent", ch, aftercare.StatusSending, aftercare.StatusSent, "")
	}
	moved := rec.Booking
	moved.AppointmentAt = moved.AppointmentAt.Add(24 * time.Hour)
	tl, _, err := fb.client.Reschedule(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
		if m, _ := (&aftercare.Record{Timeline: *tl}).Message("consent", ch); m.Status != aftercare.StatusScheduled {
			t.Errorf("unacknowledged, after a reschedule: consent %s %s, want it planned again", ch, m.Status)
		}
	}

	for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
		fb.setStatus(t, "consent", ch, aftercare.StatusScheduled, aftercare.StatusSending, "")
		fb.setStatus(t, "consent", ch, aftercare.StatusSending, aftercare.StatusSent, "")
	}
	stored, err := fb.client.Record(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := fb.client.AcknowledgeOnPage(ctx, rec.ID, stored.Fingerprint, aftercare.Acknowledgement{Digest: "sha256:x"},
		aftercare.ConsentEvidence{Name: "Ana Example"}); err != nil {
		t.Fatal(err)
	}
	moved.AppointmentAt = moved.AppointmentAt.Add(24 * time.Hour)
	if tl, _, err = fb.client.Reschedule(ctx, moved); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
		if m, _ := (&aftercare.Record{Timeline: *tl}).Message("consent", ch); m.Status != aftercare.StatusSent {
			t.Errorf("acknowledged, after a reschedule: consent %s %s, want it kept sent", ch, m.Status)
		}
	}
}

// TestResend: a message in doubt is sent again on purpose, once, as a new
// version; one that went cannot be.
func TestResend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	fb.book(t, true, true, time.Now().Add(72*time.Hour))
	fb.setStatus(t, "consent", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusSending, "")
	fb.setStatus(t, "consent", aftercare.SMS, aftercare.StatusSending, aftercare.StatusOutcomeUnknown, "")
	fb.setStatus(t, "consent", aftercare.Email, aftercare.StatusScheduled, aftercare.StatusSending, "")
	fb.setStatus(t, "consent", aftercare.Email, aftercare.StatusSending, aftercare.StatusSent, "<id>")

	if _, err := fb.client.Resend(ctx, "bk_f", "consent", aftercare.SMS, "", ""); aftercare.ErrorCode(err) != aftercare.EINVALID {
		t.Errorf("Resend without who and why = %v, want EINVALID", err)
	}
	tl, err := fb.client.Resend(ctx, "bk_f", "consent", aftercare.SMS, "front desk", "she says it never came")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := (&aftercare.Record{Timeline: *tl}).Message("consent", aftercare.SMS)
	if tl.Version != 2 || m.Status != aftercare.StatusScheduled || !strings.Contains(m.Note, "front desk: she says it never came") {
		t.Errorf("after Resend: version %d, consent sms %+v", tl.Version, m)
	}
	if _, err := fb.client.Resend(ctx, "bk_f", "consent", aftercare.Email, "front desk", "again"); aftercare.ErrorCode(err) != aftercare.ECONFLICT {
		t.Errorf("Resend of a sent email = %v, want ECONFLICT", err)
	}
	if _, err := fb.client.Resend(ctx, "bk_f", "consent", aftercare.SMS, "front desk", "twice"); aftercare.ErrorCode(err) != aftercare.ECONFLICT {
		t.Errorf("Resend of a message scheduled again = %v, want ECONFLICT", err)
	}
}

// TestHistoryTellsTheWholeStory: the audit trail has an entry for each
// thing that happens to a booking, saying who or what did it, and none
// names the patient.
func TestHistoryTellsTheWholeStory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	rec := fb.book(t, true, true, time.Now().Add(2*time.Hour))
	moved := rec.Booking
	moved.AppointmentAt = moved.AppointmentAt.Add(time.Hour)
	if _, _, err := fb.client.Reschedule(ctx, moved); err != nil {
		t.Fatal(err)
	}
	set := func(step string, from, to aftercare.MessageStatus, providerID string) aftercare.MessageRef {
		t.Helper()
		ref := aftercare.MessageRef{BookingID: "bk_f", Version: 2, Step: step, Channel: aftercare.SMS}
		c := ref.Change(from, to, "test")
		c.ProviderID = providerID
		c.Event = aftercare.Event{At: time.Now(), Kind: aftercare.EventSend, Step: step, Channel: aftercare.SMS, Number: 1, Outcome: aftercare.Outcome(to)}
		if ok, _, err := fb.store.Transition(ctx, c); err != nil || !ok {
			t.Fatalf("Transition %s -> %s = %v, %v", from, to, ok, err)
		}
		return ref
	}
	set("consent", aftercare.StatusScheduled, aftercare.StatusSending, "")
	set("consent", aftercare.StatusSending, aftercare.StatusSent, "SMconsent")
	steps := []func() error{
		func() error {
			return fb.client.Receipt(ctx, aftercare.Receipt{Key: "SMconsent:delivered", ProviderID: "SMconsent", Status: aftercare.StatusDelivered})
		},
		func() error { _, err := fb.client.Acknowledge(ctx, "+15555550123", time.Now()); return err },
		func() error {
			return fb.client.NoteReply(ctx, "bk_f", aftercare.Reply{At: time.Now(), InboxID: "in_1", Urgency: aftercare.Urgent})
		},
		func() error {
			set("upright", aftercare.StatusScheduled, aftercare.StatusSending, "")
			ref := set("upright", aftercare.StatusSending, aftercare.StatusFailed, "")
			return fb.client.Ended(ctx, ref, aftercare.StatusFailed, "twilio:21211: invalid To number")
		},
		func() error { _, err := fb.client.Treated(ctx, "bk_f", time.Now()); return err },
		func() error {
			_, err := fb.client.Resend(ctx, "bk_f", "upright", aftercare.SMS, "front desk", "new phone checked with her")
			return err
		},
		func() error { return fb.client.OptOut(ctx, "+15555550123", "", time.Now()) },
		func() error { _, err := fb.client.StopAftercare(ctx, "bk_f", "she asked us to stop"); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
	tl, err := fb.client.Get(ctx, "bk_f")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []aftercare.EventKind
	for _, e := range tl.History {
		if len(kinds) == 0 || kinds[len(kinds)-1] != e.Kind {
			kinds = append(kinds, e.Kind)
		}
		if e.By == "" && e.Kind != aftercare.EventSend {
			t.Errorf("%s entry names nobody: %+v", e.Kind, e)
		}
		for _, secret := range []string{"5555550123", "ana@example.com", "Ana"} {
			if strings.Contains(e.Detail, secret) {
				t.Errorf("%s entry names the patient: %q", e.Kind, e.Detail)
			}
		}
	}
	want := []aftercare.EventKind{aftercare.EventBooked, aftercare.EventSkipped, aftercare.EventRescheduled, aftercare.EventSend, aftercare.EventReceipt,
		aftercare.EventAcknowledged, aftercare.EventReply, aftercare.EventSend, aftercare.EventFallback, aftercare.EventTreated,
		aftercare.EventResend, aftercare.EventSuppressed, aftercare.EventFallback, aftercare.EventStopped}
	if !slices.Equal(kinds, want) {
		t.Errorf("history kinds\n got %v\nwant %v", kinds, want)
	}

	// The other way a booking ends.
	other := followSetup(t)
	other.book(t, true, true, time.Now().Add(48*time.Hour))
	tl, err = other.client.Cancel(ctx, "bk_f", true)
	if err != nil {
		t.Fatal(err)
	}
	if last := tl.History[len(tl.History)-1]; last.Kind != aftercare.EventCancelled || last.By != "clinic" || last.Detail != "the patient is told" {
		t.Errorf("last entry after Cancel: %+v", last)
	}
}

// TestPastAppointments: a booking none of whose messages can go any more is
// refused, naming the date; one partly past is taken, with a warning for
// each message that cannot go; the first, repeated, is still a repeat.
func TestPastAppointments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	b := aftercare.Booking{ID: "bk_old", Treatment: "botox", AppointmentAt: time.Now().Add(-30 * 24 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", SMSOptIn: true}}
	_, _, err := fb.client.Book(ctx, b)
	e, _ := errors.AsType[*aftercare.Error](err)
	if e == nil || e.Code != aftercare.EINVALID || len(e.Fields) != 1 || e.Fields[0].Field != "appointment_at" ||
		!strings.Contains(e.Fields[0].Message, "nothing could be sent") {
		t.Fatalf("a month-old booking: %v", err)
	}
	if _, err := fb.store.Get(ctx, "bk_old"); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
		t.Errorf("a refused booking was stored: %v", err)
	}

	b.ID, b.AppointmentAt = "bk_late", time.Now().Add(-2*time.Hour)
	tl, created, err := fb.client.Book(ctx, b)
	if err != nil || !created {
		t.Fatalf("a booking two hours late: %v", err)
	}
	if len(tl.Warnings) == 0 || !strings.Contains(strings.Join(tl.Warnings, "\n"), "upright by sms will not go") {
		t.Errorf("warnings = %q", tl.Warnings)
	}
	if again, created, err := fb.client.Book(ctx, b); err != nil || created || len(again.Warnings) != 0 {
		t.Errorf("the repeat: created %v, warnings %q, %v", created, again.Warnings, err)
	}
}
