package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aftercare/aftercare"
)

// Reschedule replaces booking b.ID with b as a new version. Messages already
// sent (or being sent) stay as they are and are not sent again, except steps
// marked repeat_on_reschedule (the reminder, which names the time); every
// other message is planned afresh and its old task removed. It returns the
// timeline and whether anything changed: a body identical to the current one
// changes nothing.
//
// A cancelled booking cannot be rescheduled (ECONFLICT); a booking that does
// not exist is ENOTFOUND.
func (c *Client) Reschedule(ctx context.Context, b aftercare.Booking) (*aftercare.Timeline, bool, error) {
	p, err := c.check(&b)
	if err != nil {
		return nil, false, err
	}
	fp := Fingerprint(&b)
	var changed *aftercare.Record
	var expired []aftercare.Message
	tl, _, err := c.change(ctx, b.ID, func(rec *aftercare.Record, now time.Time) (bool, error) {
		changed, expired = nil, nil // this run decides, not an earlier one
		if rec.Status == aftercare.BookingCancelled {
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s is cancelled; book again with a new id", b.ID)
		}
		if rec.Fingerprint == fp {
			return false, nil
		}
		b.TreatedAt = rec.Booking.TreatedAt // what the clinic reported stays true
		next := Plan(&b, p, c.cfg.Clinic, rec.CreatedAt, now)
		moved := map[aftercare.Channel]bool{
			aftercare.SMS:   b.Patient.Phone != rec.Booking.Patient.Phone,
			aftercare.Email: b.Patient.Email != rec.Booking.Patient.Email,
		}
		prev := rec.Messages
		detail := changes(&rec.Booking, &b, rec.Version+1)
		if ack := rec.ConsentAcknowledgement; ack != nil && b.Treatment != rec.Booking.Treatment {
			// The patient consented to another treatment: that consent does
			// not stand for this one (the trail keeps that it was given).
			detail += "; the consent acknowledged for " + rec.Booking.Treatment + " does not stand for " + b.Treatment
			rec.ConsentAcknowledgement, rec.ConsentAcknowledgedAt, rec.Evidence = nil, nil, nil
		}
		// A new version retires the old consent link: a consent not yet
		// acknowledged goes again, with the new one.
		again := func(s aftercare.Step) bool {
			return s.RepeatOnReschedule || (s.Name == aftercare.StepConsent && rec.ConsentAcknowledgement == nil)
		}
		rec.Messages = carry(rec.Messages, next, p, func(aftercare.Step) bool { return false }, again, moved)
		rec.Note(aftercare.Event{At: now, Kind: aftercare.EventRescheduled, By: byClinic, Detail: detail})
		expired = notePlanned(rec, prev, now)
		rec.Booking, rec.Fingerprint = b, fp
		rec.Version++
		changed = rec
		return true, nil
	})
	if err != nil || changed == nil {
		return tl, false, err
	}
	return tl, true, c.reportExpired(ctx, changed, expired)
}

// Treated records that booking id's treatment ended at at, and re-plans the
// steps anchored on the end of treatment from that moment; steps before the
// treatment are left as they are. Reporting the same time again changes
// nothing.
func (c *Client) Treated(ctx context.Context, id string, at time.Time) (*aftercare.Timeline, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	if at.IsZero() {
		return nil, (aftercare.Fields{{Field: "treated_at", Message: "is required, as an RFC 3339 time such as 2026-12-01T15:40:00-05:00"}}).Err("the report is not valid")
	}
	var changed *aftercare.Record
	var expired []aftercare.Message
	tl, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
		changed, expired = nil, nil // this run decides, not an earlier one
		b := rec.Booking
		switch {
		case rec.Status == aftercare.BookingCancelled:
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s is cancelled; a cancelled booking gets no aftercare", id)
		case at.After(now.Add(15 * time.Minute)):
			return false, (aftercare.Fields{{Field: "treated_at", Message: "is in the future; report the treatment once it has ended"}}).Err("the report is not valid")
		case at.Before(b.AppointmentAt.Add(-12 * time.Hour)):
			return false, (aftercare.Fields{{Field: "treated_at", Message: "is more than 12 hours before the appointment; check the date"}}).Err("the report is not valid")
		case b.TreatedAt != nil && b.TreatedAt.Equal(at):
			return false, nil
		}
		p, err := c.protocol(b.Treatment)
		if err != nil {
			return false, err
		}
		at := at.In(b.Location())
		b.TreatedAt = &at
		next := Plan(&b, p, c.cfg.Clinic, rec.CreatedAt, now)
		prev := rec.Messages
		rec.Messages = carry(rec.Messages, next, p, func(s aftercare.Step) bool {
			return s.When.Anchor != aftercare.AnchorTreatmentEnd
		}, func(s aftercare.Step) bool { return s.RepeatOnReschedule }, nil)
		rec.Note(aftercare.Event{At: now, Kind: aftercare.EventTreated, By: byClinic, Detail: "treatment ended at " + at.Format(time.RFC3339)})
		expired = notePlanned(rec, prev, now)
		rec.Booking = b
		rec.Version++
		changed = rec
		return true, nil
	})
	if err != nil || changed == nil {
		return tl, err
	}
	return tl, c.reportExpired(ctx, changed, expired)
}

// Cancel cancels booking id: every message not yet sent is cancelled and
// its task removed. With notify, the patient is told on each channel they
// opted into, once. Cancelling again changes nothing.
//
// A booking whose treatment was reported, or whose appointment has ended,
// is not cancelled (ECONFLICT): that would drop the patient's aftercare and
// tell them their visit is cancelled. StopAftercare stops it on purpose.
func (c *Client) Cancel(ctx context.Context, id string, notify bool) (*aftercare.Timeline, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	tl, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
		switch {
		case rec.Status == aftercare.BookingCancelled:
			return false, nil
		case rec.Booking.TreatedAt != nil:
			return false, aftercare.Errorf(aftercare.ECONFLICT,
				"booking %s was treated: cancelling it would drop the patient's aftercare and tell them their visit is cancelled; stop the aftercare on purpose instead", id)
		case !rec.Booking.End().After(now):
			return false, aftercare.Errorf(aftercare.ECONFLICT,
				"the appointment of booking %s has ended: cancelling it would drop the patient's aftercare and tell them their visit is cancelled; if they did not come, or the aftercare must stop, stop the aftercare on purpose instead", id)
		}
		rec.Status = aftercare.BookingCancelled
		rec.Drop("", aftercare.StatusCancelled, "")
		detail := "the patient is not told"
		if notify {
			rec.Messages = append(rec.Messages, c.notices(&rec.Booking, now)...)
			detail = "the patient is told"
		}
		rec.Note(aftercare.Event{At: now, Kind: aftercare.EventCancelled, By: byClinic, Detail: detail})
		return true, nil
	})
	return tl, err
}

// StopAftercare stops the aftercare of booking id on purpose (the patient
// did not come, or the clinic takes over): every message not yet sent is
// cancelled with reason, and the patient is not told. Stopping again
// changes nothing.
func (c *Client) StopAftercare(ctx context.Context, id, reason string) (*aftercare.Timeline, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	if strings.TrimSpace(reason) == "" {
		return nil, (aftercare.Fields{{Field: "reason", Message: "is required: say why the aftercare stops, such as \"did not come\""}}).Err("the request is not valid")
	}
	tl, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
		if rec.Status == aftercare.BookingCancelled {
			return false, nil
		}
		reason := clip(strings.TrimSpace(reason), 500)
		rec.Status = aftercare.BookingCancelled
		rec.Drop("", aftercare.StatusCancelled, "aftercare stopped by the clinic: "+reason)
		rec.Note(aftercare.Event{At: now, Kind: aftercare.EventStopped, By: byClinic, Detail: reason})
		return true, nil
	})
	return tl, err
}

// changes says, for the audit trail, what a new version of a booking
// changes: times and settings as they are, contact details only by name.
func changes(old, b *aftercare.Booking, version int) string {
	var what []string
	diff := func(name string, from, to any) {
		if from != to {
			what = append(what, fmt.Sprintf("%s %v -> %v", name, from, to))
		}
	}
	diff("treatment", old.Treatment, b.Treatment)
	if !old.AppointmentAt.Equal(b.AppointmentAt) {
		what = append(what, "appointment "+old.AppointmentAt.In(old.Location()).Format(time.RFC3339)+" -> "+b.AppointmentAt.In(b.Location()).Format(time.RFC3339))
	}
	diff("duration_minutes", old.DurationMinutes, b.DurationMinutes)
	diff("timezone", old.Patient.Timezone, b.Patient.Timezone)
	diff("locale", old.Patient.Locale, b.Patient.Locale)
	diff("sms_opt_in", old.Patient.SMSOptIn, b.Patient.SMSOptIn)
	diff("email_opt_in", old.Patient.EmailOptIn, b.Patient.EmailOptIn)
	for _, f := range []struct {
		name     string
		from, to string
	}{{"first_name", old.Patient.FirstName, b.Patient.FirstName}, {"phone", old.Patient.Phone, b.Patient.Phone}, {"email", old.Patient.Email, b.Patient.Email}} {
		if f.from != f.to {
			what = append(what, f.name+" changed")
		}
	}
	return fmt.Sprintf("version %d: %s", version, strings.Join(what, "; "))
}

// notices plans the cancellation notice: now on every channel of the
// patient, deferred past quiet hours, due before the appointment would have
// started (or within the hour, if that has passed).
func (c *Client) notices(b *aftercare.Booking, now time.Time) []aftercare.Message {
	loc := b.Location()
	now = now.In(loc).Truncate(time.Second)
	deadline := b.AppointmentAt.In(loc)
	if deadline.Before(now.Add(15 * time.Minute)) {
		deadline = now.Add(time.Hour)
	}
	step := aftercare.Step{Name: aftercare.StepCancellation, Quiet: aftercare.QuietDefer, IfLate: aftercare.LateSend}
	var msgs []aftercare.Message
	for _, ch := range b.Channels() {
		sendAt, status, note := schedule(step, now, deadline, c.cfg.Clinic.QuietFor(ch), now, loc)
		msgs = append(msgs, aftercare.Message{Step: step.Name, Channel: ch, SendAt: sendAt, Deadline: deadline, Status: status, Note: note})
	}
	return msgs
}

// change runs edit on the current record of booking id inside a Store
// update, then brings the tasks in line. edit reports whether it changed
// anything; the timeline returned is the record as stored.
func (c *Client) change(ctx context.Context, id string, edit func(rec *aftercare.Record, now time.Time) (bool, error)) (*aftercare.Timeline, bool, error) {
	var before *aftercare.Record
	now := c.cfg.Now()
	rec, err := c.store.Update(ctx, id, func(rec *aftercare.Record) (time.Time, error) {
		before = clone(rec)
		changed, err := edit(rec, now)
		if err != nil {
			return time.Time{}, err
		}
		if !changed {
			return time.Time{}, errUnchanged // nothing to write
		}
		return c.expiry(rec, now), nil
	})
	changed := true
	if errors.Is(err, errUnchanged) {
		// Nothing to take back; only make sure every task is there.
		rec, before, changed, err = before, nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := c.sync(ctx, before, rec, false); err != nil {
		return nil, false, fmt.Errorf("booking %s changed, but its tasks are not in line: %w; repeat the request", id, err)
	}
	if err := c.index(ctx, rec, now); err != nil { // a reschedule may bring a new number
		return nil, false, err
	}
	return timeline(rec), changed, nil
}

// errUnchanged ends an update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// carry merges the previous messages of a booking into its new plan. A
// message keeps its previous state if keep says so for its step; if it
// happened (it went out or may have: sent, delivered, outcome unknown) and
// again does not say its step goes again; or if it failed and the contact
// for its channel did not change (moved says which did: a new number after
// an invalid one is worth a try, the same number is not). Messages that
// happened and are not in the new plan (a channel the patient left, the
// cancellation notice) stay in the timeline as history.
func carry(prev, next []aftercare.Message, p aftercare.Protocol, keep, again func(aftercare.Step) bool, moved map[aftercare.Channel]bool) []aftercare.Message {
	out := slices.Clone(next)
	for i, m := range out {
		j := slices.IndexFunc(prev, func(o aftercare.Message) bool { return o.Step == m.Step && o.Channel == m.Channel })
		if j < 0 {
			continue
		}
		step, _ := p.Step(m.Step)
		o := prev[j]
		if keep(step) || (o.Status.Happened() && !again(step)) || (o.Status == aftercare.StatusFailed && !moved[o.Channel]) {
			out[i] = o
		}
	}
	for _, o := range prev {
		inNext := slices.ContainsFunc(next, func(m aftercare.Message) bool { return m.Step == o.Step && m.Channel == o.Channel })
		if !inNext && o.Status.Happened() {
			out = append(out, o)
		}
	}
	return out
}

func clone(rec *aftercare.Record) *aftercare.Record {
	c := *rec
	c.Messages = slices.Clone(rec.Messages)
	return &c
}

// clip shortens s to at most n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// resendWindow is how long a message sent again on purpose has to go, when
// its own deadline has passed.
const resendWindow = time.Hour

// Resend sends message step on ch of booking id again, on purpose: a
// message that failed, expired, or whose outcome is unknown. The clinic
// says who asks (by) and why; both are kept on the message. It goes once,
// now (texts after quiet hours, as its step says), by its own deadline or
// within the hour if that has passed, as a new version of the booking (so
// its task and its email's Message-ID are new). A message sent, delivered,
// or still to go cannot be resent (ECONFLICT).
func (c *Client) Resend(ctx context.Context, id, step string, ch aftercare.Channel, by, reason string) (*aftercare.Timeline, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	var fs aftercare.Fields
	if strings.TrimSpace(reason) == "" {
		fs.Add("reason", "is required: say why it is sent again, such as \"the patient did not get it\"")
	}
	if strings.TrimSpace(by) == "" {
		fs.Add("by", "is required: who asks for it")
	}
	if err := fs.Err("the request is not valid"); err != nil {
		return nil, err
	}
	tl, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
		i := slices.IndexFunc(rec.Messages, func(m aftercare.Message) bool { return m.Step == step && m.Channel == ch })
		switch {
		case i < 0:
			return false, aftercare.Errorf(aftercare.ENOTFOUND, "booking %s has no %s message by %s", id, step, ch)
		case rec.Status == aftercare.BookingCancelled && step != aftercare.StepCancellation:
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s is cancelled", id)
		case step == aftercare.StepConsent && (!now.Before(rec.Booking.AppointmentAt) || rec.Booking.TreatedAt != nil):
			return false, aftercare.Errorf(aftercare.ECONFLICT,
				"the consent of booking %s is not sent again: its appointment has begun, and the consent page closed then; go through the consent with the patient in person", id)
		}
		m := &rec.Messages[i]
		switch m.Status {
		case aftercare.StatusFailed, aftercare.StatusExpired, aftercare.StatusOutcomeUnknown:
		default:
			return false, aftercare.Errorf(aftercare.ECONFLICT, "the %s %s of booking %s is %s; only a failed, expired or outcome-unknown message is sent again", step, ch, id, m.Status)
		}
		s, _ := c.cfg.Protocols[rec.Booking.Treatment].Step(step)
		loc := rec.Booking.Location()
		at := now.In(loc).Truncate(time.Second)
		if !at.Add(15 * time.Minute).Before(m.Deadline) {
			m.Deadline = at.Add(resendWindow)
		}
		if step == aftercare.StepConsent && m.Deadline.After(rec.Booking.AppointmentAt) {
			m.Deadline = rec.Booking.AppointmentAt.In(loc) // its page closes then
		}
		policy := s.Quiet
		if policy == "" {
			policy = aftercare.QuietDefer
		}
		sendAt, status, note := aftercare.Place(at, m.Deadline, policy, c.cfg.Clinic.QuietFor(ch), loc)
		if status != aftercare.StatusScheduled {
			return false, aftercare.Errorf(aftercare.ECONFLICT, "the %s %s cannot go before its deadline (%s); try again after quiet hours", step, ch, note)
		}
		m.SendAt, m.Status, m.ProviderID, m.Digest = sendAt, aftercare.StatusScheduled, "", ""
		m.Error = ""
		m.Note = "sent again on purpose by " + clip(strings.TrimSpace(by), 100) + ": " + clip(strings.TrimSpace(reason), 300)
		rec.Note(aftercare.Event{At: now, Kind: aftercare.EventResend, Step: step, Channel: ch,
			By: clip(strings.TrimSpace(by), 100), Detail: clip(strings.TrimSpace(reason), 300)})
		rec.Version++
		return true, nil
	})
	return tl, err
}
