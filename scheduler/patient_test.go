package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// TestPatientsLiveBooking: a patient's text belongs to the newest of the
// number's live bookings, not to a newer one that is cancelled; with none
// live, to the newest. (Bookings made in the same millisecond are newest
// by id, as the phone index orders them.)
func TestPatientsLiveBooking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	for i, id := range []string{"bk_a", "bk_b", "bk_c"} {
		b := aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: time.Now().Add(time.Duration(48+i) * time.Hour).Truncate(time.Minute),
			DurationMinutes: 30, Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", SMSOptIn: true}}
		if _, _, err := fb.client.Book(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	patient := func() string {
		t.Helper()
		rec, err := fb.client.Patient(ctx, "+15555550123")
		if err != nil || rec == nil {
			t.Fatalf("Patient = %v, %v", rec, err)
		}
		return rec.ID
	}
	for _, step := range []struct{ cancel, want string }{{"", "bk_c"}, {"bk_c", "bk_b"}, {"bk_b", "bk_a"}, {"bk_a", "bk_c"}} {
		if step.cancel != "" {
			if _, err := fb.client.Cancel(ctx, step.cancel, false); err != nil {
				t.Fatal(err)
			}
		}
		if got := patient(); got != step.want {
			t.Errorf("after cancelling %q: the text belongs to %s, want %s", step.cancel, got, step.want)
		}
	}
}

// TestNoConsentResendAfterTheVisitBegins: a consent that did not go is not
// sent again once the appointment has begun: its page has closed, and the
// patient would get a link that no longer works.
func TestNoConsentResendAfterTheVisitBegins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb := followSetup(t)
	start := time.Now().Add(3 * time.Hour).Truncate(time.Minute)
	fb.book(t, true, false, start)
	fb.setStatus(t, "consent", aftercare.SMS, aftercare.StatusScheduled, aftercare.StatusExpired, "")
	for _, tt := range []struct {
		now  time.Time
		want string
	}{
		{start.Add(time.Minute), aftercare.ECONFLICT},
		{start.Add(-10 * time.Minute), ""},
	} {
		client := scheduler.New(fb.store, taskqueue.New(fb.rdb), scheduler.Config{Protocols: fixture.Protocols(t), Clinic: fixture.AnyHour(t),
			Now: func() time.Time { return tt.now }})
		tl, err := client.Resend(ctx, "bk_f", "consent", aftercare.SMS, "front desk", "she says it never came")
		if got := aftercare.ErrorCode(err); got != tt.want {
			t.Errorf("resend at %s: %v, want %q", tt.now.Sub(start), err, tt.want)
		}
		// Resent ten minutes before the visit, it must still go before it,
		// not within the hour a late resend of another step gets.
		if err == nil {
			m, _ := tl.Message("consent", aftercare.SMS)
			if !m.Deadline.Equal(start) {
				t.Errorf("the resent consent's deadline is %s, want the appointment's start %s", m.Deadline, start)
			}
		}
	}
}
