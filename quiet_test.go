package aftercare_test

import (
	"testing"
	"time"

	"github.com/aftercare/aftercare"
)

func TestQuietHoursUntil(t *testing.T) {
	t.Parallel()
	night := aftercare.QuietHours{Start: "21:00", End: "08:00"}
	tests := []struct {
		name   string
		quiet  aftercare.QuietHours
		zone   string
		at     string
		inside bool
		until  string
	}{
		{"evening, spans midnight", night, "Europe/Madrid", "2026-12-01T22:15:00+01:00", true, "2026-12-02T08:00:00+01:00"},
		{"small hours", night, "Europe/Madrid", "2026-12-02T03:00:00+01:00", true, "2026-12-02T08:00:00+01:00"},
		{"end is exclusive", night, "Europe/Madrid", "2026-12-02T08:00:00+01:00", false, ""},
		{"start is inclusive", night, "Europe/Madrid", "2026-12-01T21:00:00+01:00", true, "2026-12-02T08:00:00+01:00"},
		{"daytime", night, "Europe/Madrid", "2026-12-01T12:00:00+01:00", false, ""},
		{"same-day window", aftercare.QuietHours{Start: "12:00", End: "14:00"}, "Europe/Madrid", "2026-12-01T13:00:00+01:00", true, "2026-12-01T14:00:00+01:00"},
		{"no quiet hours", aftercare.QuietHours{}, "Europe/Madrid", "2026-12-01T23:00:00+01:00", false, ""},
		// The clinic may be in New York; the patient's clock decides.
		{"noon in New York is night in Tokyo", night, "Asia/Tokyo", "2026-12-01T12:00:00-05:00", true, "2026-12-02T08:00:00+09:00"},
		{"night in New York is day in Tokyo", night, "Asia/Tokyo", "2026-12-01T23:00:00-05:00", false, ""},
		// DST: quiet hours end at 08:00 on the new clock.
		{"night DST starts (US)", night, "America/New_York", "2026-03-07T23:30:00-05:00", true, "2026-03-08T08:00:00-04:00"},
		{"night DST ends (US)", night, "America/New_York", "2026-10-31T23:30:00-04:00", true, "2026-11-01T08:00:00-05:00"},
		{"night DST ends (EU)", night, "Europe/Madrid", "2026-10-24T23:00:00+02:00", true, "2026-10-25T08:00:00+01:00"},
		{"night DST starts (southern)", night, "Australia/Sydney", "2026-10-03T22:00:00+10:00", true, "2026-10-04T08:00:00+11:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			at, _ := time.Parse(time.RFC3339, tt.at)
			until, inside := tt.quiet.Until(at, loc)
			if inside != tt.inside {
				t.Fatalf("inside = %v, want %v", inside, tt.inside)
			}
			want, _ := time.Parse(time.RFC3339, tt.until)
			if inside && !until.Equal(want) {
				t.Errorf("until = %s, want %s", until.Format(time.RFC3339), tt.until)
			}
		})
	}
}

func TestOpeningHours(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	h := aftercare.OpeningHours{"mon": "09:00-18:00", "tue": "09:00-18:00", "sat": "10:00-14:00"}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at   string
		open bool
		next string
	}{
		{"2026-11-30T10:00:00-05:00", true, ""},                           // Monday morning
		{"2026-11-30T18:00:00-05:00", false, "2026-12-01T09:00:00-05:00"}, // closing time is closed
		{"2026-11-30T07:00:00-05:00", false, "2026-11-30T09:00:00-05:00"}, // before opening
		{"2026-12-01T20:00:00-05:00", false, "2026-12-05T10:00:00-05:00"}, // Tuesday night: Saturday next
		{"2026-12-06T12:00:00-05:00", false, "2026-12-07T09:00:00-05:00"}, // Sunday
		{"2026-11-30T14:30:00Z", true, ""},                                // 09:30 in New York
	}
	for _, tt := range tests {
		at, _ := time.Parse(time.RFC3339, tt.at)
		open, next := h.Open(at, ny)
		want, _ := time.Parse(time.RFC3339, tt.next)
		if open != tt.open || (!open && !next.Equal(want)) {
			t.Errorf("Open(%s) = %v, next %s; want %v, %s", tt.at, open, next, tt.open, tt.next)
		}
	}
	if open, next := (aftercare.OpeningHours{}).Open(time.Now(), ny); open || !next.IsZero() {
		t.Errorf("no hours: open %v, next %s", open, next)
	}
	for _, bad := range []aftercare.OpeningHours{{"monday": "09:00-18:00"}, {"mon": "9-6"}, {"mon": "18:00-09:00"}} {
		if bad.Check() == nil {
			t.Errorf("Check(%v) = nil", bad)
		}
	}
}
