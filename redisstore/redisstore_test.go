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

	steps := []struct {
		name string
		do   func() (any, error)
		want any
	}{
		{"claim", func() (any, error) { return tb.store.Claim(ctx, ref) }, aftercare.StatusScheduled},
		{"claim again finds it sending", func() (any, error) { return tb.store.Claim(ctx, ref) }, aftercare.StatusSending},
		{"wrong from", func() (any, error) {
			return tb.store.Transition(ctx, ref, aftercare.StatusScheduled, aftercare.StatusExpired, "", "")
		}, false},
		{"sent", func() (any, error) {
			return tb.store.Transition(ctx, ref, aftercare.StatusSending, aftercare.StatusSent, "SM1", "")
		}, true},
		{"claim a sent message", func() (any, error) { return tb.store.Claim(ctx, ref) }, aftercare.StatusSent},
		{"old version", func() (any, error) {
			old := ref
			old.Version = 7
			return tb.store.Claim(ctx, old)
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
	if _, err := tb.store.Claim(ctx, missing); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
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
			st, err := tb.store.Claim(context.Background(), ref)
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
