package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
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
