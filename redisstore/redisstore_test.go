package redisstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
)

type testBundle struct {
	rdb   *redis.Client
	store *redisstore.Store
	rec   *aftercare.Record
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb := redistest.Client(t)
	at := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	rec := &aftercare.Record{
		Booking: aftercare.Booking{ID: "bk_1", Treatment: "botox", AppointmentAt: at, DurationMinutes: 30,
			Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "UTC", SMSOptIn: true}},
		Fingerprint: "fp1",
		CreatedAt:   at.Add(-time.Hour),
		Timeline: aftercare.Timeline{ID: "bk_1", Version: 1, Status: aftercare.BookingScheduled, Messages: []aftercare.Message{
			{Step: "consent", Channel: aftercare.SMS, SendAt: at.Add(-time.Hour), Deadline: at, Status: aftercare.StatusScheduled},
			{Step: "reminder", Channel: aftercare.SMS, SendAt: at.Add(-24 * time.Hour), Deadline: at.Add(-2 * time.Hour), Status: aftercare.StatusSkipped},
		}},
	}
	return &testBundle{rdb: rdb, store: redisstore.New(rdb), rec: rec}
}

func (tb *testBundle) create(t *testing.T) {
	t.Helper()
	if _, created, err := tb.store.Create(context.Background(), tb.rec, time.Now().Add(time.Hour)); err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
}

func TestCreateGet(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)

	got, err := tb.store.Get(ctx, "bk_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint != "fp1" || got.Version != 1 || got.Booking.Patient.Phone != "+15555550123" || len(got.Messages) != 2 {
		t.Fatalf("Get = %+v", got)
	}
	if m := got.Messages[1]; m.Status != aftercare.StatusSkipped || !m.SendAt.Equal(tb.rec.Messages[1].SendAt) {
		t.Errorf("message = %+v", m)
	}
	ttl := tb.rdb.PTTL(ctx, redisstore.Key("bk_1")).Val()
	if ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL = %s, want about an hour", ttl)
	}

	other := *tb.rec
	other.Fingerprint = "fp2"
	stored, created, err := tb.store.Create(ctx, &other, time.Now().Add(time.Hour))
	if err != nil || created || stored.Fingerprint != "fp1" {
		t.Errorf("second Create = %v, %v, %v; want the first record back", stored.Fingerprint, created, err)
	}

	if _, err := tb.store.Get(ctx, "nope"); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
		t.Errorf("Get(missing) = %v, want ENOTFOUND", err)
	}
}

func TestClaimTransition(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}
	attempt := aftercare.Event{Step: "consent", Channel: aftercare.SMS, Number: 1}
	claim := func(ref aftercare.MessageRef) (any, error) {
		st, _, err := tb.store.Claim(ctx, ref, "", time.Now())
		return st, err
	}

	steps := []struct {
		name string
		do   func() (any, error)
		want any
	}{
		{"claim", func() (any, error) { return claim(ref) }, aftercare.StatusScheduled},
		{"claim again finds it sending", func() (any, error) { return claim(ref) }, aftercare.StatusSending},
		{"wrong from", func() (any, error) {
			c := ref.Change(aftercare.StatusScheduled, aftercare.StatusExpired, "late")
			c.Event = attempt
			changed, _, err := tb.store.Transition(ctx, c)
			return changed, err
		}, false},
		{"sent", func() (any, error) {
			c := ref.Change(aftercare.StatusSending, aftercare.StatusSent, "")
			c.ProviderID, c.Event = "SM1", attempt
			changed, _, err := tb.store.Transition(ctx, c)
			return changed, err
		}, true},
		{"claim a sent message", func() (any, error) { return claim(ref) }, aftercare.StatusSent},
		{"old version", func() (any, error) {
			old := ref
			old.Version = 7
			return claim(old)
		}, aftercare.StatusCancelled},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil || got != s.want {
			t.Fatalf("%s = %v, %v; want %v", s.name, got, err, s.want)
		}
	}
	rec, _ := tb.store.Get(ctx, "bk_1")
	if m := rec.Messages[0]; m.Status != aftercare.StatusSent || m.ProviderID != "SM1" {
		t.Errorf("message = %+v", m)
	}

	missing := ref
	missing.Step = "day99"
	if _, _, err := tb.store.Claim(ctx, missing, "", time.Now()); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
		t.Errorf("claim of a missing message = %v, want ENOTFOUND", err)
	}
}

// TestClaimOnce races many claims of one message: exactly one wins.
func TestClaimOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.create(t)
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for range 32 {
		wg.Go(func() {
			st, _, err := tb.store.Claim(context.Background(), ref, "", time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			if st == aftercare.StatusScheduled {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d claims won, want exactly 1", wins)
	}
}

// TestTransitionHistory: every transition adds its attempt to the
// history, changed or not, once even if the call is repeated, and never to
// an expired record; a sent SMS is found by its provider id.
func TestTransitionHistory(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}
	at := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	sent := aftercare.Event{At: at, Step: "consent", Channel: aftercare.SMS, Number: 1, Outcome: aftercare.OutcomeSent, Detail: "SM1"}
	again := sent
	again.At, again.Number = at.Add(time.Minute), 2
	record := func(ref aftercare.MessageRef, providerID string, a aftercare.Event) (bool, error) {
		c := ref.Change(aftercare.StatusSending, aftercare.StatusSent, "")
		c.ProviderID, c.Event = providerID, a
		changed, _, err := tb.store.Transition(ctx, c)
		return changed, err
	}

	if _, _, err := tb.store.Claim(ctx, ref, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []bool{true, false} { // the second is a retried call
		if changed, err := record(ref, "SM1", sent); err != nil || changed != want {
			t.Fatalf("Transition = %v, %v; want %v", changed, err, want)
		}
	}
	if changed, err := record(ref, "SM1", again); err != nil || changed {
		t.Fatalf("Transition of a sent message = %v, %v; want false", changed, err)
	}
	rec, err := tb.store.Get(ctx, "bk_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.History) != 2 || !rec.History[0].At.Equal(sent.At) || rec.History[0].Detail != "SM1" || rec.History[1].Number != 2 {
		t.Errorf("history = %+v, want the sent attempt and the repeat", rec.History)
	}
	if got, err := tb.store.ByProvider(ctx, "SM1"); err != nil || got.TaskID() != ref.TaskID() {
		t.Errorf("ByProvider(SM1) = %v, %v; want %s", got.TaskID(), err, ref.TaskID())
	}
	if ttl := tb.rdb.TTL(ctx, "aftercare:sid:SM1").Val(); ttl < 6*24*time.Hour {
		t.Errorf("provider id link TTL = %s, want a week", ttl)
	}

	// An email's Message-ID is not linked: receipts come from Twilio only.
	email := ref
	email.Channel = aftercare.Email
	if _, err := record(email, "<id@clinic.example>", sent); err != nil {
		t.Fatal(err)
	}
	if n := tb.rdb.Exists(ctx, "aftercare:sid:<id@clinic.example>").Val(); n != 0 {
		t.Errorf("an email's Message-ID is linked")
	}

	tb.rdb.Del(ctx, redisstore.Key("bk_1"))
	if changed, err := record(ref, "SM2", again); err != nil || changed {
		t.Fatalf("Transition on an expired record = %v, %v; want false", changed, err)
	}
	if n := tb.rdb.Exists(ctx, redisstore.Key("bk_1")).Val(); n != 0 {
		t.Errorf("Transition brought an expired record back")
	}
}

// TestClaimReadsOptOut: given the patient's number, the claim also says
// whether it replied STOP.
func TestClaimReadsOptOut(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}
	phone := tb.rec.Booking.Patient.Phone

	if st, out, err := tb.store.Claim(ctx, ref, phone, time.Now()); err != nil || st != aftercare.StatusScheduled || out {
		t.Fatalf("Claim = %s, %v, %v; want scheduled, not opted out", st, out, err)
	}
	if err := tb.store.SetOptOut(ctx, phone, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if st, out, err := tb.store.Claim(ctx, ref, phone, time.Now()); err != nil || st != aftercare.StatusSending || !out {
		t.Fatalf("Claim after STOP = %s, %v, %v; want sending, opted out", st, out, err)
	}
	if _, out, err := tb.store.Claim(ctx, ref, "", time.Now()); err != nil || out {
		t.Fatalf("Claim without a number = %v, %v; want no opt-out read", out, err)
	}
}

// TestTransitionTargets: a change lands on the target the booking's state
// picks, as aftercare.MessageRef.Change lays them out, and a change the
// domain forbids is refused before it reaches Redis.
func TestTransitionTargets(t *testing.T) {
	t.Parallel()
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}
	tests := []struct {
		name     string
		booking  []any // fields set on the record after the claim
		change   aftercare.Change
		changed  bool
		status   aftercare.MessageStatus
		errorHas string
	}{
		{"retry", nil, ref.Change(aftercare.StatusSending, aftercare.StatusScheduled, "twilio:20500"),
			true, aftercare.StatusScheduled, "twilio:20500"},
		{"retry after a cancel", []any{"status", "cancelled"}, ref.Change(aftercare.StatusSending, aftercare.StatusScheduled, "twilio:20500"),
			true, aftercare.StatusCancelled, "twilio:20500"},
		{"retry after a reschedule", []any{"version", 2}, ref.Change(aftercare.StatusSending, aftercare.StatusScheduled, "twilio:20500"),
			true, aftercare.StatusFailed, "not retried because the booking changed"},
		{"sent after a cancel is still sent", []any{"status", "cancelled"}, ref.Change(aftercare.StatusSending, aftercare.StatusSent, ""),
			true, aftercare.StatusSent, ""},
		{"expire a superseded version's message", []any{"version", 2, "m:consent:sms", "scheduled"},
			ref.Change(aftercare.StatusScheduled, aftercare.StatusExpired, "late"), false, aftercare.StatusScheduled, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			ctx := context.Background()
			tb.create(t)
			if _, _, err := tb.store.Claim(ctx, ref, "", time.Now()); err != nil {
				t.Fatal(err)
			}
			if tt.booking != nil {
				tb.rdb.HSet(ctx, redisstore.Key("bk_1"), tt.booking...)
			}
			changed, _, err := tb.store.Transition(ctx, tt.change)
			if err != nil || changed != tt.changed {
				t.Fatalf("Transition = %v, %v; want %v", changed, err, tt.changed)
			}
			rec, err := tb.store.Get(ctx, "bk_1")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := rec.Message("consent", aftercare.SMS)
			if m.Status != tt.status || !strings.Contains(m.Error, tt.errorHas) {
				t.Errorf("message %s (%q), want %s with %q", m.Status, m.Error, tt.status, tt.errorHas)
			}
		})
	}

	tb := setup(t)
	tb.create(t)
	if _, _, err := tb.store.Transition(context.Background(), ref.Change(aftercare.StatusSent, aftercare.StatusScheduled, "")); err == nil {
		t.Error("sent -> scheduled was written")
	}
}

// TestReadsLegacyOutcomeUnknown: records written before outcome_unknown was
// a status keep such a message as failed with "outcome unknown: ..." and
// its attempt as "uncertain"; both read as outcome unknown.
func TestReadsLegacyOutcomeUnknown(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)
	tb.rdb.HSet(ctx, redisstore.Key("bk_1"),
		"m:consent:sms", "failed", "e:consent:sms", "outcome unknown: an earlier attempt stopped while sending; not sent again to avoid a duplicate",
		"hn", 1, "h:1", `{"at":"2026-11-20T10:00:00Z","step":"consent","channel":"sms","attempt":2,"outcome":"uncertain","detail":"an earlier attempt stopped while sending"}`)
	rec, err := tb.store.Get(ctx, "bk_1")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := rec.Message("consent", aftercare.SMS); m.Status != aftercare.StatusOutcomeUnknown {
		t.Errorf("message status %s, want outcome_unknown", m.Status)
	}
	if len(rec.History) != 1 || rec.History[0].Outcome != aftercare.OutcomeUnknown {
		t.Errorf("history %+v, want one outcome_unknown attempt", rec.History)
	}
	// A failure that is not in doubt stays failed.
	tb.rdb.HSet(ctx, redisstore.Key("bk_1"), "e:consent:sms", "twilio:21211: invalid To number")
	if rec, _ = tb.store.Get(ctx, "bk_1"); rec.Messages[0].Status != aftercare.StatusFailed {
		t.Errorf("a permanent failure reads %s", rec.Messages[0].Status)
	}
}

// TestReclaim: one run takes over a message in doubt; a second with the
// same view of its claim does not.
func TestReclaim(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}
	claim := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if _, _, err := tb.store.Claim(ctx, ref, "", claim); err != nil {
		t.Fatal(err)
	}
	rec, _ := tb.store.Get(ctx, "bk_1")
	if m, _ := rec.Message("consent", aftercare.SMS); !m.ClaimedAt.Equal(claim) {
		t.Fatalf("claimed at %s, want %s", m.ClaimedAt, claim)
	}
	for i, want := range []bool{true, false} {
		if ok, err := tb.store.Reclaim(ctx, ref, claim, time.Now()); err != nil || ok != want {
			t.Errorf("Reclaim %d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
}
