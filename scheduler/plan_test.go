package scheduler_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/scheduler"
)

var defaultClinic = aftercare.Clinic{QuietHours: aftercare.QuietHours{Start: "21:00", End: "08:00"}}

func botox(t testing.TB) aftercare.Protocol {
	t.Helper()
	set, err := protocol.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return set["botox"]
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func booking(t testing.TB, tz, appointment string, sms, email bool) *aftercare.Booking {
	t.Helper()
	b := &aftercare.Booking{
		ID: "bk_1", Treatment: "botox", AppointmentAt: mustTime(t, appointment), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: tz, SMSOptIn: sms, EmailOptIn: email},
	}
	if err := b.Normalize(); err != nil {
		t.Fatal(err)
	}
	return b
}

// line renders a message as "step/channel send_at deadline status" in the
// patient's zone, so expectations read like the timeline table.
func line(m aftercare.Message) string {
	return fmt.Sprintf("%s/%s %s %s %s", m.Step, m.Channel,
		m.SendAt.Format(time.RFC3339), m.Deadline.Format(time.RFC3339), m.Status)
}

func TestPlan(t *testing.T) {
	t.Parallel()
	p := botox(t)
	tests := []struct {
		name        string
		tz          string
		appointment string
		now         string
		sms, email  bool
		want        []string
	}{
		{
			name: "default timeline, booked a week ahead", tz: "America/New_York",
			appointment: "2026-12-01T15:00:00-05:00", now: "2026-11-24T12:00:00-05:00", sms: true, email: true,
			want: []string{
				"consent/email 2026-11-24T12:00:00-05:00 2026-12-01T15:00:00-05:00 scheduled",
				"consent/sms 2026-11-24T12:00:00-05:00 2026-12-01T15:00:00-05:00 scheduled",
				"reminder/sms 2026-11-30T15:00:00-05:00 2026-12-01T13:00:00-05:00 scheduled",
				"reminder/email 2026-11-30T15:00:00-05:00 2026-12-01T13:00:00-05:00 scheduled",
				"upright/sms 2026-12-01T15:30:00-05:00 2026-12-01T16:30:00-05:00 scheduled",
				"lie_down/sms 2026-12-01T19:30:00-05:00 2026-12-01T20:30:00-05:00 scheduled",
				"day1/sms 2026-12-02T10:00:00-05:00 2026-12-02T22:00:00-05:00 scheduled",
				"day1/email 2026-12-02T10:00:00-05:00 2026-12-02T22:00:00-05:00 scheduled",
				"day3/sms 2026-12-04T10:00:00-05:00 2026-12-05T10:00:00-05:00 scheduled",
				"day14/email 2026-12-15T10:00:00-05:00 2026-12-18T10:00:00-05:00 scheduled",
				"day14/sms 2026-12-15T10:00:00-05:00 2026-12-18T10:00:00-05:00 scheduled",
			},
		},
		{
			name: "booked less than a day ahead: no reminder", tz: "Europe/Madrid",
			appointment: "2026-12-01T16:00:00+01:00", now: "2026-12-01T09:15:00+01:00", sms: true,
			want: []string{
				"consent/sms 2026-12-01T09:15:00+01:00 2026-12-01T16:00:00+01:00 scheduled",
				"reminder/sms 2026-11-30T16:00:00+01:00 2026-12-01T14:00:00+01:00 skipped",
				"upright/sms 2026-12-01T16:30:00+01:00 2026-12-01T17:30:00+01:00 scheduled",
				"lie_down/sms 2026-12-01T20:30:00+01:00 2026-12-01T21:30:00+01:00 scheduled",
				"day1/sms 2026-12-02T10:00:00+01:00 2026-12-02T22:00:00+01:00 scheduled",
				"day3/sms 2026-12-04T10:00:00+01:00 2026-12-05T10:00:00+01:00 scheduled",
				"day14/sms 2026-12-15T10:00:00+01:00 2026-12-18T10:00:00+01:00 scheduled",
			},
		},
		{
			name: "evening appointment: upright ignores quiet hours, lie_down is skipped", tz: "Europe/London",
			appointment: "2026-12-01T20:30:00Z", now: "2026-11-20T12:00:00Z", sms: true,
			want: []string{
				"consent/sms 2026-11-20T12:00:00Z 2026-12-01T20:30:00Z scheduled",
				"reminder/sms 2026-11-30T20:30:00Z 2026-12-01T18:30:00Z scheduled",
				"upright/sms 2026-12-01T21:00:00Z 2026-12-01T22:00:00Z scheduled",
				"lie_down/sms 2026-12-02T01:00:00Z 2026-12-02T02:00:00Z skipped",
				"day1/sms 2026-12-02T10:00:00Z 2026-12-02T22:00:00Z scheduled",
				"day3/sms 2026-12-04T10:00:00Z 2026-12-05T10:00:00Z scheduled",
				"day14/sms 2026-12-15T10:00:00Z 2026-12-18T10:00:00Z scheduled",
			},
		},
		{
			name: "email only, booked at night: the consent goes at once (quiet hours are for texts); clinical steps by email", tz: "America/Chicago",
			appointment: "2026-12-03T07:30:00-06:00", now: "2026-11-20T23:10:00-06:00", email: true,
			want: []string{
				"consent/email 2026-11-20T23:10:00-06:00 2026-12-03T07:30:00-06:00 scheduled",
				"reminder/email 2026-12-02T07:30:00-06:00 2026-12-03T05:30:00-06:00 scheduled",
				"upright/email 2026-12-03T08:00:00-06:00 2026-12-03T09:00:00-06:00 scheduled",
				"lie_down/email 2026-12-03T12:00:00-06:00 2026-12-03T13:00:00-06:00 scheduled",
				"day1/email 2026-12-04T10:00:00-06:00 2026-12-04T22:00:00-06:00 scheduled",
				"day3/email 2026-12-06T10:00:00-06:00 2026-12-07T10:00:00-06:00 scheduled",
				"day14/email 2026-12-17T10:00:00-06:00 2026-12-20T10:00:00-06:00 scheduled",
			},
		},
		{
			name: "booked at 22:30 for a 07:30 visit: the consent email goes at once, the text would be too late", tz: "America/Chicago",
			appointment: "2026-11-21T07:30:00-06:00", now: "2026-11-20T22:30:00-06:00", sms: true, email: true,
			want: []string{
				"consent/email 2026-11-20T22:30:00-06:00 2026-11-21T07:30:00-06:00 scheduled",
				"consent/sms 2026-11-21T08:00:00-06:00 2026-11-21T07:30:00-06:00 expired",
				"reminder/sms 2026-11-20T07:30:00-06:00 2026-11-21T05:30:00-06:00 skipped",
				"reminder/email 2026-11-20T07:30:00-06:00 2026-11-21T05:30:00-06:00 skipped",
				"upright/sms 2026-11-21T08:00:00-06:00 2026-11-21T09:00:00-06:00 scheduled",
				"lie_down/sms 2026-11-21T12:00:00-06:00 2026-11-21T13:00:00-06:00 scheduled",
				"day1/sms 2026-11-22T10:00:00-06:00 2026-11-22T22:00:00-06:00 scheduled",
				"day1/email 2026-11-22T10:00:00-06:00 2026-11-22T22:00:00-06:00 scheduled",
				"day3/sms 2026-11-24T10:00:00-06:00 2026-11-25T10:00:00-06:00 scheduled",
				"day14/email 2026-12-05T10:00:00-06:00 2026-12-08T10:00:00-06:00 scheduled",
				"day14/sms 2026-12-05T10:00:00-06:00 2026-12-08T10:00:00-06:00 scheduled",
			},
		},
		{
			name: "DST starts the next night: day1 stays at 10:00 local", tz: "America/New_York",
			appointment: "2026-03-07T15:00:00-05:00", now: "2026-03-01T12:00:00-05:00", sms: true,
			want: []string{
				"consent/sms 2026-03-01T12:00:00-05:00 2026-03-07T15:00:00-05:00 scheduled",
				"reminder/sms 2026-03-06T15:00:00-05:00 2026-03-07T13:00:00-05:00 scheduled",
				"upright/sms 2026-03-07T15:30:00-05:00 2026-03-07T16:30:00-05:00 scheduled",
				"lie_down/sms 2026-03-07T19:30:00-05:00 2026-03-07T20:30:00-05:00 scheduled",
				"day1/sms 2026-03-08T10:00:00-04:00 2026-03-08T22:00:00-04:00 scheduled",
				"day3/sms 2026-03-10T10:00:00-04:00 2026-03-11T10:00:00-04:00 scheduled",
				"day14/sms 2026-03-21T10:00:00-04:00 2026-03-24T10:00:00-04:00 scheduled",
			},
		},
		{
			name: "DST ends the next night: day1 stays at 10:00 local", tz: "Europe/Berlin",
			appointment: "2026-10-24T11:00:00+02:00", now: "2026-10-20T12:00:00+02:00", sms: true,
			want: []string{
				"consent/sms 2026-10-20T12:00:00+02:00 2026-10-24T11:00:00+02:00 scheduled",
				"reminder/sms 2026-10-23T11:00:00+02:00 2026-10-24T09:00:00+02:00 scheduled",
				"upright/sms 2026-10-24T11:30:00+02:00 2026-10-24T12:30:00+02:00 scheduled",
				"lie_down/sms 2026-10-24T15:30:00+02:00 2026-10-24T16:30:00+02:00 scheduled",
				"day1/sms 2026-10-25T10:00:00+01:00 2026-10-25T22:00:00+01:00 scheduled",
				"day3/sms 2026-10-27T10:00:00+01:00 2026-10-28T10:00:00+01:00 scheduled",
				"day14/sms 2026-11-07T10:00:00+01:00 2026-11-10T10:00:00+01:00 scheduled",
			},
		},
		{
			name: "far from UTC: quiet hours are the patient's, not the server's", tz: "Pacific/Auckland",
			appointment: "2026-12-01T09:00:00+13:00", now: "2026-11-20T10:00:00Z", sms: true,
			want: []string{
				"consent/sms 2026-11-21T08:00:00+13:00 2026-12-01T09:00:00+13:00 scheduled",
				"reminder/sms 2026-11-30T09:00:00+13:00 2026-12-01T07:00:00+13:00 scheduled",
				"upright/sms 2026-12-01T09:30:00+13:00 2026-12-01T10:30:00+13:00 scheduled",
				"lie_down/sms 2026-12-01T13:30:00+13:00 2026-12-01T14:30:00+13:00 scheduled",
				"day1/sms 2026-12-02T10:00:00+13:00 2026-12-02T22:00:00+13:00 scheduled",
				"day3/sms 2026-12-04T10:00:00+13:00 2026-12-05T10:00:00+13:00 scheduled",
				"day14/sms 2026-12-15T10:00:00+13:00 2026-12-18T10:00:00+13:00 scheduled",
			},
		},
		{
			name: "appointment already over: what is past its deadline expires", tz: "Asia/Tokyo",
			appointment: "2026-11-20T10:00:00+09:00", now: "2026-11-20T13:00:00+09:00", sms: true,
			want: []string{
				"consent/sms 2026-11-20T13:00:00+09:00 2026-11-20T10:00:00+09:00 expired",
				"reminder/sms 2026-11-19T10:00:00+09:00 2026-11-20T08:00:00+09:00 skipped",
				"upright/sms 2026-11-20T13:00:00+09:00 2026-11-20T11:30:00+09:00 expired",
				"lie_down/sms 2026-11-20T14:30:00+09:00 2026-11-20T15:30:00+09:00 scheduled",
				"day1/sms 2026-11-21T10:00:00+09:00 2026-11-21T22:00:00+09:00 scheduled",
				"day3/sms 2026-11-23T10:00:00+09:00 2026-11-24T10:00:00+09:00 scheduled",
				"day14/sms 2026-12-04T10:00:00+09:00 2026-12-07T10:00:00+09:00 scheduled",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := booking(t, tt.tz, tt.appointment, tt.sms, tt.email)
			now := mustTime(t, tt.now)
			msgs := scheduler.Plan(b, p, defaultClinic, now, now)
			var got []string
			for _, m := range msgs {
				got = append(got, line(m))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestPlanQuietEmail: a clinic that asks for quiet emails gets them
// deferred too.
func TestPlanQuietEmail(t *testing.T) {
	t.Parallel()
	b := booking(t, "America/Chicago", "2026-12-03T07:30:00-06:00", false, true)
	now := mustTime(t, "2026-11-20T23:10:00-06:00")
	clinic := defaultClinic
	clinic.QuietEmail = true
	msgs := scheduler.Plan(b, botox(t), clinic, now, now)
	if got := line(msgs[0]); got != "consent/email 2026-11-21T08:00:00-06:00 2026-12-03T07:30:00-06:00 scheduled" {
		t.Errorf("consent %s, want it deferred to 08:00", got)
	}
}

func BenchmarkPlan(b *testing.B) {
	p := botox(b)
	bk := booking(b, "America/New_York", "2026-12-01T15:00:00-05:00", true, true)
	now := mustTime(b, "2026-11-24T12:00:00-05:00")
	b.ReportAllocs()
	for b.Loop() {
		scheduler.Plan(bk, p, defaultClinic, now, now)
	}
}
