package redisstore_test

import (
	"context"
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
	attempt := aftercare.Attempt{Step: "consent", Channel: aftercare.SMS, Number: 1}
	claim := func(ref aftercare.MessageRef) (any, error) {
		st, _, err := tb.store.Claim(ctx, ref, "")
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
			return tb.store.Transition(ctx, ref, aftercare.StatusScheduled, aftercare.StatusExpired, "", "", attempt)
		}, false},
		{"sent", func() (any, error) {
			return tb.store.Transition(ctx, ref, aftercare.StatusSending, aftercare.StatusSent, "SM1", "", attempt)
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
	if _, _, err := tb.store.Claim(ctx, missing, ""); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
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
			st, _, err := tb.store.Claim(context.Background(), ref, "")
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
	sent := aftercare.Attempt{At: at, Step: "consent", Channel: aftercare.SMS, Number: 1, Outcome: "sent", Detail: "SM1"}
	again := sent
	again.At, again.Number = at.Add(time.Minute), 2

	if _, _, err := tb.store.Claim(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	for _, want := range []bool{true, false} { // the second is a retried call
		if changed, err := tb.store.Transition(ctx, ref, aftercare.StatusSending, aftercare.StatusSent, "SM1", "", sent); err != nil || changed != want {
			t.Fatalf("Transition = %v, %v; want %v", changed, err, want)
		}
	}
	if changed, err := tb.store.Transition(ctx, ref, aftercare.StatusSending, aftercare.StatusSent, "SM1", "", again); err != nil || changed {
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
	if _, err := tb.store.Transition(ctx, email, aftercare.StatusSending, aftercare.StatusSent, "<id@clinic.example>", "", sent); err != nil {
		t.Fatal(err)
	}
	if n := tb.rdb.Exists(ctx, "aftercare:sid:<id@clinic.example>").Val(); n != 0 {
		t.Errorf("an email's Message-ID is linked")
	}

	tb.rdb.Del(ctx, redisstore.Key("bk_1"))
	if changed, err := tb.store.Transition(ctx, ref, aftercare.StatusSending, aftercare.StatusSent, "SM2", "", again); err != nil || changed {
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

	if st, out, err := tb.store.Claim(ctx, ref, phone); err != nil || st != aftercare.StatusScheduled || out {
		t.Fatalf("Claim = %s, %v, %v; want scheduled, not opted out", st, out, err)
	}
	if err := tb.store.SetOptOut(ctx, phone, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if st, out, err := tb.store.Claim(ctx, ref, phone); err != nil || st != aftercare.StatusSending || !out {
		t.Fatalf("Claim after STOP = %s, %v, %v; want sending, opted out", st, out, err)
	}
	if _, out, err := tb.store.Claim(ctx, ref, ""); err != nil || out {
		t.Fatalf("Claim without a number = %v, %v; want no opt-out read", out, err)
	}
}
