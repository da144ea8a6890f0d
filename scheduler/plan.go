package scheduler

import (
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// Plan turns a validated booking into its messages under protocol p: one per
// step and channel the patient opted into, each with its send time and
// send-by deadline in the patient's time zone, in the order of the protocol's
// steps. It is a pure function of its arguments: booked is when aftercare
// first received the booking (the "booked" anchor), now is the time of
// planning.
//
// Rules, in order:
//   - a step whose time has already passed is sent now, or skipped if the
//     step says if_late: skip;
//   - a step whose deadline has passed is expired;
//   - a step due inside quiet hours is deferred to their end (expired if that
//     is past the deadline), skipped, or sent anyway, as the step says.
func Plan(b *aftercare.Booking, p aftercare.Protocol, quiet aftercare.QuietHours, booked, now time.Time) []aftercare.Message {
	loc := b.Location()
	now = now.In(loc).Truncate(time.Second)
	anchors := map[aftercare.Anchor]time.Time{
		aftercare.AnchorBooked:       booked.In(loc).Truncate(time.Second),
		aftercare.AnchorAppointment:  b.AppointmentAt.In(loc),
		aftercare.AnchorTreatmentEnd: b.End().In(loc),
	}
	channels := b.Channels()

	var msgs []aftercare.Message
	for _, step := range p.Steps {
		due := resolve(step.When, anchors[step.When.Anchor], loc)
		anchors[aftercare.AnchorSend] = due
		deadline := resolve(step.Deadline, anchors[step.Deadline.Anchor], loc)
		sendAt, status := schedule(step, due, deadline, quiet, now, loc)
		for _, ch := range step.Channels {
			if !slices.Contains(channels, ch) {
				continue
			}
			msgs = append(msgs, aftercare.Message{
				Step:     step.Name,
				Channel:  ch,
				SendAt:   sendAt,
				Deadline: deadline,
				Status:   status,
			})
		}
	}
	return msgs
}

// schedule applies the late, deadline and quiet-hour rules to one step.
func schedule(step aftercare.Step, due, deadline time.Time, quiet aftercare.QuietHours, now time.Time, loc *time.Location) (time.Time, aftercare.MessageStatus) {
	sendAt := due
	if sendAt.Before(now) {
		if step.IfLate == aftercare.LateSkip {
			return sendAt, aftercare.StatusSkipped
		}
		sendAt = now
	}
	if !sendAt.Before(deadline) {
		return sendAt, aftercare.StatusExpired
	}
	if step.Quiet == aftercare.QuietIgnore {
		return sendAt, aftercare.StatusScheduled
	}
	end, inside := QuietUntil(sendAt, quiet, loc)
	switch {
	case !inside:
		return sendAt, aftercare.StatusScheduled
	case step.Quiet == aftercare.QuietSkip:
		return sendAt, aftercare.StatusSkipped
	case !end.Before(deadline):
		return end, aftercare.StatusExpired
	default:
		return end, aftercare.StatusScheduled
	}
}

// resolve places rule relative to base in loc: move Days calendar days, set
// the wall clock to At, then add Offset. Calendar arithmetic happens on the
// wall clock, so "next day at 10:00" is 10:00 local across a DST change.
func resolve(r aftercare.TimeRule, base time.Time, loc *time.Location) time.Time {
	t := base.In(loc)
	if r.Days != 0 || r.At != "" {
		y, m, d := t.Date()
		h, mi, s := t.Clock()
		ns := t.Nanosecond()
		if r.At != "" {
			h, mi = clock(r.At)
			s, ns = 0, 0
		}
		t = time.Date(y, m, d+r.Days, h, mi, s, ns, loc)
	}
	return t.Add(r.Offset)
}

// QuietUntil reports whether t falls inside the quiet hours q, read on the
// wall clock of loc, and if so when they end.
func QuietUntil(t time.Time, q aftercare.QuietHours, loc *time.Location) (time.Time, bool) {
	if q.Start == "" || q.End == "" || q.Start == q.End {
		return t, false
	}
	sh, sm := clock(q.Start)
	eh, em := clock(q.End)
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
			d++ // quiet hours end tomorrow morning
		}
	}
	if !inside {
		return t, false
	}
	return time.Date(y, mo, d, eh, em, 0, 0, loc), true
}

// clock parses a validated "15:04" clock time.
func clock(s string) (hour, minute int) {
	t, _ := time.Parse("15:04", s)
	return t.Hour(), t.Minute()
}
