package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
	fp := fingerprint(&b)
	return c.change(ctx, b.ID, func(rec *aftercare.Record, now time.Time) (bool, error) {
		if rec.Status == aftercare.BookingCancelled {
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s is cancelled; book again with a new id", b.ID)
		}
		if rec.Fingerprint == fp {
			return false, nil
		}
		b.TreatedAt = rec.Booking.TreatedAt // what the clinic reported stays true
		next := Plan(&b, p, c.cfg.Clinic.QuietHours, rec.CreatedAt, now)
		rec.Messages = carry(rec.Messages, next, p, func(aftercare.Step) bool { return false })
		rec.Booking, rec.Fingerprint = b, fp
		rec.Version++
		return true, nil
	})
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
	tl, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
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
		next := Plan(&b, p, c.cfg.Clinic.QuietHours, rec.CreatedAt, now)
		rec.Messages = carry(rec.Messages, next, p, func(s aftercare.Step) bool {
			return s.When.Anchor != aftercare.AnchorTreatmentEnd
		})
		rec.Booking = b
		rec.Version++
		return true, nil
	})
	return tl, err
}

// Cancel cancels booking id: every message not yet sent is cancelled and
// its task removed. With notify, the patient is told on each channel they
// opted into, once. Cancelling again changes nothing.
func (c *Client) Cancel(ctx context.Context, id string, notify bool) (*aftercare.Timeline, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	tl, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
		if rec.Status == aftercare.BookingCancelled {
			return false, nil
		}
		rec.Status = aftercare.BookingCancelled
		rec.Drop("", aftercare.StatusCancelled, "")
		if notify {
			rec.Messages = append(rec.Messages, c.notices(&rec.Booking, now)...)
		}
		return true, nil
	})
	return tl, err
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
	sendAt, status, note := schedule(step, now, deadline, c.cfg.Clinic.QuietHours, now, loc)
	var msgs []aftercare.Message
	for _, ch := range b.Channels() {
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
	if err := c.sync(ctx, before, rec); err != nil {
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
// message keeps its previous state if keep says so for its step, or if it
// happened (it went out or may have) and its step is not repeated on
// reschedule. Messages that happened and are not in the new plan (a channel
// the patient left, the cancellation notice) stay in the timeline as
// history.
func carry(prev, next []aftercare.Message, p aftercare.Protocol, keep func(aftercare.Step) bool) []aftercare.Message {
	out := slices.Clone(next)
	for i, m := range out {
		j := slices.IndexFunc(prev, func(o aftercare.Message) bool { return o.Step == m.Step && o.Channel == m.Channel })
		if j < 0 {
			continue
		}
		step, _ := p.Step(m.Step)
		if keep(step) || (prev[j].Status.Happened() && !step.RepeatOnReschedule) {
			out[i] = prev[j]
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
