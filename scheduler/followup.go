package scheduler

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// What follows a message that ends: the worker tells the Client (Ended,
// Sent), and so do delivery receipts and a patient's STOP.

// Ended is told that message ref ended in status st for reason without
// surely reaching the patient. If its step has a fallback channel, the
// step goes that way once, before its deadline. A person at the clinic is
// told (Problems) when the outcome is unknown (the patient may or may not
// have it), or when the message failed, or expired on a clinical step, and
// no other message of its step reaches the patient.
func (c *Client) Ended(ctx context.Context, ref aftercare.MessageRef, st aftercare.MessageStatus, reason string) error {
	var rec *aftercare.Record
	_, _, err := c.change(ctx, ref.BookingID, func(r *aftercare.Record, now time.Time) (bool, error) {
		rec = r
		if r.Version != ref.Version {
			return false, nil
		}
		return c.fallback(r, ref.Step, ref.Channel, now), nil
	})
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	return c.report(ctx, rec, ref, st, reason)
}

// fallback adds the message that carries step on its fallback channel when
// its message on ch cannot reach the patient: if the step has a fallback,
// the patient can be reached on it, it has no message there yet, the booking
// is not cancelled and the deadline has not passed. It goes at the step's
// own time, or now if that has passed, and reports whether it was added.
// It is planned afresh (quiet hours of its channel) but keeps the step's
// deadline.
func (c *Client) fallback(rec *aftercare.Record, step string, ch aftercare.Channel, now time.Time) bool {
	s, ok := c.cfg.Protocols[rec.Booking.Treatment].Step(step)
	failed, had := rec.Message(step, ch)
	switch {
	case !ok || !had || s.Fallback == "" || s.Fallback == ch || rec.Status == aftercare.BookingCancelled:
		return false
	case !slices.Contains(rec.Booking.Channels(), s.Fallback) || !now.Before(failed.Deadline):
		return false
	}
	if _, exists := rec.Message(step, s.Fallback); exists {
		return false
	}
	loc := rec.Booking.Location()
	at := failed.SendAt
	if now.After(at) {
		at = now.In(loc).Truncate(time.Second)
	}
	sendAt, status, note := aftercare.Place(at, failed.Deadline, s.Quiet, c.cfg.Clinic.QuietFor(s.Fallback), loc)
	if note == "" {
		note = fmt.Sprintf("sent by %s because the %s was %s", s.Fallback, ch, failed.Status)
	}
	rec.Messages = append(rec.Messages, aftercare.Message{Step: step, Channel: s.Fallback,
		SendAt: sendAt, Deadline: failed.Deadline, Status: status, Note: note})
	rec.Note(aftercare.Event{At: now, Kind: aftercare.EventFallback, Step: step, Channel: s.Fallback, By: bySelf,
		Detail: fmt.Sprintf("the %s was %s; by %s: %s", ch, failed.Status, s.Fallback, status)})
	return true
}

// report tells the clinic about message ref of rec, which ended in st, if
// a person must know (see Ended).
func (c *Client) report(ctx context.Context, rec *aftercare.Record, ref aftercare.MessageRef, st aftercare.MessageStatus, reason string) error {
	if c.cfg.Problems == nil || rec == nil || rec.Version != ref.Version {
		return nil
	}
	s, _ := c.cfg.Protocols[rec.Booking.Treatment].Step(ref.Step)
	switch st {
	case aftercare.StatusOutcomeUnknown:
	case aftercare.StatusFailed, aftercare.StatusExpired:
		if reaches(rec, ref.Step) || (st == aftercare.StatusExpired && !s.Clinical) {
			return nil
		}
	default:
		return nil
	}
	return c.cfg.Problems.Report(ctx, aftercare.Problem{Ref: ref, Status: st, Reason: reason, At: c.cfg.Now(), Clinical: s.Clinical})
}

// reaches reports whether some message of step still goes, or went, to the
// patient.
func reaches(rec *aftercare.Record, step string) bool {
	return slices.ContainsFunc(rec.Messages, func(m aftercare.Message) bool {
		return m.Step == step && (m.Status == aftercare.StatusScheduled || m.Status.Happened())
	})
}

// Sent is told that the provider took message ref as providerID, with the
// receipts for it that came before the send was recorded: they are applied
// now, then dropped. A receipt applied twice changes nothing the second
// time, so one that stays because dropping failed does no harm.
func (c *Client) Sent(ctx context.Context, ref aftercare.MessageRef, providerID string, early []aftercare.Receipt) error {
	if len(early) == 0 {
		return nil
	}
	for _, r := range early {
		if err := c.applyReceipt(ctx, r); err != nil {
			return err
		}
	}
	return c.store.DropEarlyReceipts(ctx, providerID, len(early))
}
