package aftercare

import (
	"fmt"
	"time"
)

// QuietHours is a daily window, in the patient's local time, in which
// non-clinical messages are not sent. Start after End means it spans
// midnight (21:00 to 08:00). Empty, or Start equal to End, means none.
type QuietHours struct {
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// Until reports whether t falls inside the quiet hours, read on the wall
// clock of loc (the patient's zone), and if so when they end. Quiet hours
// with a malformed clock time (the clinic file is checked when loaded) are
// none.
func (q QuietHours) Until(t time.Time, loc *time.Location) (time.Time, bool) {
	if q.Start == "" || q.End == "" || q.Start == q.End {
		return t, false
	}
	sh, sm, serr := ParseClock(q.Start)
	eh, em, eerr := ParseClock(q.End)
	if serr != nil || eerr != nil {
		return t, false
	}
	start, end := sh*60+sm, eh*60+em

	local := t.In(loc)
	y, mo, d := local.Date()
	now := local.Hour()*60 + local.Minute()
	var inside bool
	if start < end {
		inside = now >= start && now < end
	} else {
		inside = now >= start || now < end
		if now >= start {
			d++ // they end tomorrow morning
		}
	}
	if !inside {
		return t, false
	}
	return time.Date(y, mo, d, eh, em, 0, 0, loc), true
}

// ParseClock parses a 24-hour "15:04" clock time.
func ParseClock(s string) (hour, minute int, err error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a 24-hour clock time such as 10:00", s)
	}
	return t.Hour(), t.Minute(), nil
}

// Notes that say why a message did not simply go out at its time.
const (
	noteDeadline      = "its send-by deadline had passed"
	noteQuietDeferred = "moved to the end of quiet hours"
	noteQuietExpired  = "fell in quiet hours, which end after its send-by deadline"
	noteQuietSkipped  = "fell in quiet hours; this step is skipped then"
	noteQuietIgnored  = "sent in quiet hours: a clinical safety message"
)

// Place applies the send-by deadline and the quiet hours to a message that
// is due at at, on the clock of loc (the patient's zone), under its step's
// quiet-hour policy. It returns when the message goes and its status, with
// a note when a rule moved or dropped it:
//
//   - at or past the deadline, it is expired;
//   - inside quiet hours, policy ignore sends it anyway (clinical safety
//     messages), skip drops it (skipped), and defer moves it to the end of
//     quiet hours, or expires it if they end at or after the deadline.
//
// The planner applies it when a booking is planned and the worker again
// right before sending: a retry can drift past a deadline or into quiet
// hours.
func Place(at, deadline time.Time, policy QuietPolicy, quiet QuietHours, loc *time.Location) (time.Time, MessageStatus, string) {
	if !at.Before(deadline) {
		return at, StatusExpired, noteDeadline
	}
	end, inside := quiet.Until(at, loc)
	switch {
	case !inside:
		return at, StatusScheduled, ""
	case policy == QuietIgnore:
		return at, StatusScheduled, noteQuietIgnored
	case policy == QuietSkip:
		return at, StatusSkipped, noteQuietSkipped
	case !end.Before(deadline):
		return end, StatusExpired, noteQuietExpired
	default:
		return end, StatusScheduled, noteQuietDeferred
	}
}
