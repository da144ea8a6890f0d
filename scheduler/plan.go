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
		sendAt, status, note := schedule(step, due, deadline, quiet, now, loc)
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
				Note:     note,
			})
		}
	}
	return msgs
}

// Notes say why a message is not simply sent at its step's time.
const (
	noteLateSkipped   = "booked after its time; this step is left out when booked late"
	noteLateNow       = "booked after its time; sent at once"
	noteDeadline      = "its send-by deadline had passed"
	noteQuietDeferred = "moved to the end of quiet hours"
	noteQuietExpired  = "fell in quiet hours, which end after its send-by deadline"
	noteQuietSkipped  = "fell in quiet hours; this step is skipped then"
	noteQuietIgnored  = "sent in quiet hours: a clinical safety message"
)

// schedule applies the late, deadline and quiet-hour rules to one step, and
// says which moved or dropped it.
func schedule(step aftercare.Step, due, deadline time.Time, quiet aftercare.QuietHours, now time.Time, loc *time.Location) (time.Time, aftercare.MessageStatus, string) {
	sendAt, note := due, ""
	if sendAt.Before(now) {
		if step.IfLate == aftercare.LateSkip {
			return sendAt, aftercare.StatusSkipped, noteLateSkipped
		}
		sendAt, note = now, noteLateNow
	}
	if !sendAt.Before(deadline) {
		return sendAt, aftercare.StatusExpired, noteDeadline
	}
	end, inside := quiet.Until(sendAt, loc)
	switch {
	case !inside:
		return sendAt, aftercare.StatusScheduled, note
	case step.Quiet == aftercare.QuietIgnore:
		return sendAt, aftercare.StatusScheduled, noteQuietIgnored
	case step.Quiet == aftercare.QuietSkip:
		return sendAt, aftercare.StatusSkipped, noteQuietSkipped
	case !end.Before(deadline):
		return end, aftercare.StatusExpired, noteQuietExpired
	default:
		return end, aftercare.StatusScheduled, noteQuietDeferred
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
			h, mi = aftercare.Clock(r.At)
			s, ns = 0, 0
		}
		t = time.Date(y, m, d+r.Days, h, mi, s, ns, loc)
	}
	return t.Add(r.Offset)
}
