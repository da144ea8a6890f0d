package scheduler

import (
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// Plan turns a validated booking into its messages under protocol p and
// the clinic's rules: one per step and channel the patient opted into, each
// with its send time and send-by deadline in the patient's time zone, in
// the order of the protocol's steps. A step whose text cannot reach the
// patient (no SMS opt-in) goes on its fallback channel instead, if it has
// one the patient can be reached on. It is a pure function of its
// arguments: booked is when aftercare first received the booking (the
// "booked" anchor), now is the time of planning.
//
// Rules, in order:
//   - a step whose time has already passed is sent now, or skipped if the
//     step says if_late: skip;
//   - a step whose deadline has passed is expired;
//   - a text due inside quiet hours (an email too, if the clinic says so) is
//     deferred to their end (expired if that is past the deadline), skipped,
//     or sent anyway, as the step says.
func Plan(b *aftercare.Booking, p aftercare.Protocol, clinic aftercare.Clinic, booked, now time.Time) []aftercare.Message {
	loc := b.Location()
	now = now.In(loc).Truncate(time.Second)
	anchors := map[aftercare.Anchor]time.Time{
		aftercare.AnchorBooked:       booked.In(loc).Truncate(time.Second),
		aftercare.AnchorAppointment:  b.AppointmentAt.In(loc),
		aftercare.AnchorTreatmentEnd: b.End().In(loc),
	}
	reachable := b.Channels()

	var msgs []aftercare.Message
	for _, step := range p.Steps {
		due := resolve(step.When, anchors[step.When.Anchor], loc)
		anchors[aftercare.AnchorSend] = due
		deadline := resolve(step.Deadline, anchors[step.Deadline.Anchor], loc)
		for _, ch := range channels(step, reachable) {
			sendAt, status, note := schedule(step, due, deadline, clinic.QuietFor(ch), now, loc)
			if !slices.Contains(step.Channels, ch) && note == "" {
				note = "sent by " + string(ch) + ": the patient cannot get it by " + string(step.Channels[0])
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

// channels are the channels step goes on to a patient reachable on those
// listed: its own, or its fallback when none of its own reaches them.
func channels(step aftercare.Step, reachable []aftercare.Channel) []aftercare.Channel {
	var chs []aftercare.Channel
	for _, ch := range step.Channels {
		if slices.Contains(reachable, ch) {
			chs = append(chs, ch)
		}
	}
	if len(chs) == 0 && step.Fallback != "" && slices.Contains(reachable, step.Fallback) {
		chs = append(chs, step.Fallback)
	}
	return chs
}

// Notes of the late rule; aftercare.Place gives those of the deadline and
// quiet hours.
const (
	noteLateSkipped = "booked after its time; this step is left out when booked late"
	noteLateNow     = "booked after its time; sent at once"
)

// schedule applies the late rule to one step, then the deadline and quiet
// hours (aftercare.Place), and says which moved or dropped it.
func schedule(step aftercare.Step, due, deadline time.Time, quiet aftercare.QuietHours, now time.Time, loc *time.Location) (time.Time, aftercare.MessageStatus, string) {
	sendAt, late := due, ""
	if sendAt.Before(now) {
		if step.IfLate == aftercare.LateSkip {
			return sendAt, aftercare.StatusSkipped, noteLateSkipped
		}
		sendAt, late = now, noteLateNow
	}
	at, status, note := aftercare.Place(sendAt, deadline, step.Quiet, quiet, loc)
	if note == "" {
		note = late
	}
	return at, status, note
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
		if ah, am, err := aftercare.ParseClock(r.At); err == nil { // checked when the protocol was loaded
			h, mi, s, ns = ah, am, 0, 0
		}
		t = time.Date(y, m, d+r.Days, h, mi, s, ns, loc)
	}
	return t.Add(r.Offset)
}
