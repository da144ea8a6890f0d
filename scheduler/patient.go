package scheduler

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// What a patient's text does to their bookings. The inbox decides what a
// text means; these carry it out.

// Patient returns the booking a text from phone belongs to: the newest of
// the number's live bookings, else (all cancelled, or their aftercare
// stopped) the newest of them, or nil if the number has none.
func (c *Client) Patient(ctx context.Context, phone string) (*aftercare.Record, error) {
	recs, err := c.bookingsOf(ctx, phone)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	for _, rec := range recs {
		if rec.Status != aftercare.BookingCancelled {
			return rec, nil
		}
	}
	return recs[0], nil
}

// bookingsOf returns the bookings that text phone, newest first.
func (c *Client) bookingsOf(ctx context.Context, phone string) ([]*aftercare.Record, error) {
	ids, err := c.store.Bookings(ctx, phone)
	if err != nil {
		return nil, err
	}
	var recs []*aftercare.Record
	for _, id := range ids {
		rec, err := c.store.Get(ctx, id)
		if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
			continue // expired since it was indexed
		}
		if err != nil {
			return nil, err
		}
		if rec.Booking.Patient.Phone == phone {
			recs = append(recs, rec)
		}
	}
	return recs, nil
}

// OptOut records that phone opted out of SMS at at: every SMS not yet sent
// to it, in every booking, becomes suppressed. Email is unaffected. by is
// who asked: "" for the patient's own STOP, else the person at the clinic
// who read an opt-out in a text.
func (c *Client) OptOut(ctx context.Context, phone, by string, at time.Time) error {
	reason, who := "the patient replied STOP", byPatient
	if by != "" {
		reason, who = "opted out at the clinic's request", by
	}
	if err := c.store.SetOptOut(ctx, phone, true, at); err != nil {
		return err
	}
	ids, err := c.store.Bookings(ctx, phone)
	if err != nil {
		return err
	}
	for _, id := range ids {
		_, _, err := c.change(ctx, id, func(rec *aftercare.Record, _ time.Time) (bool, error) {
			if rec.Booking.Patient.Phone != phone {
				return false, nil
			}
			before := slices.Clone(rec.Messages)
			dropped := rec.Drop(aftercare.SMS, aftercare.StatusSuppressed, reason)
			for i, m := range rec.Messages {
				if m.Status != before[i].Status {
					rec.Note(aftercare.Event{At: at, Kind: aftercare.EventSuppressed, Step: m.Step, Channel: m.Channel,
						Status: m.Status, By: who, Detail: reason + ": this text will not go"})
				}
			}
			for _, m := range rec.Messages {
				if m.Channel == aftercare.SMS && m.Status == aftercare.StatusSuppressed {
					c.fallback(rec, m.Step, m.Channel, at)
				}
			}
			return dropped, nil
		})
		if err != nil && aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
			return fmt.Errorf("suppress SMS of %s: %w", id, err)
		}
	}
	return nil
}

// OptIn records that phone opted back into SMS; what was suppressed stays
// so.
func (c *Client) OptIn(ctx context.Context, phone string, at time.Time) error {
	return c.store.SetOptOut(ctx, phone, false, at)
}

// Acknowledge records a YES from phone at at: it acknowledges the consent
// of the booking whose consent SMS was most recently sent to that number
// and is not acknowledged yet, keeping which message it answers and the
// digest of its text. It returns that booking's id, or "" if there is none.
func (c *Client) Acknowledge(ctx context.Context, phone string, at time.Time) (string, error) {
	recs, err := c.bookingsOf(ctx, phone)
	if err != nil {
		return "", err
	}
	var target *aftercare.Record
	var sentAt time.Time
	for _, rec := range recs {
		if t, ok := consentSent(rec); ok && rec.ConsentAcknowledgement == nil && (target == nil || t.After(sentAt)) {
			target, sentAt = rec, t
		}
	}
	if target == nil {
		return "", nil
	}
	_, _, err = c.change(ctx, target.ID, func(rec *aftercare.Record, _ time.Time) (bool, error) {
		m, ok := rec.Message(aftercare.StepConsent, aftercare.SMS)
		if !ok || rec.ConsentAcknowledgement != nil || rec.Booking.Patient.Phone != phone {
			return false, nil
		}
		rec.ConsentAcknowledgement = &aftercare.Acknowledgement{
			At: at.In(rec.Booking.Location()), Method: aftercare.AckBySMS, ProviderID: m.ProviderID, Digest: m.Digest,
		}
		rec.ConsentAcknowledgedAt = &rec.ConsentAcknowledgement.At
		rec.Note(aftercare.Event{At: at, Kind: aftercare.EventAcknowledged, Step: aftercare.StepConsent, Channel: aftercare.SMS,
			By: byPatient, Detail: "replied YES to " + m.ProviderID})
		return true, nil
	})
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return "", nil // expired since it was read
	}
	if err != nil {
		return "", err
	}
	return target.ID, nil
}

// consentSent returns when rec's consent SMS went out (or may have), if it
// did.
func consentSent(rec *aftercare.Record) (time.Time, bool) {
	m, ok := rec.Message(aftercare.StepConsent, aftercare.SMS)
	if !ok || !m.Status.Happened() {
		return time.Time{}, false
	}
	at := m.SendAt
	for _, a := range rec.History {
		if a.Kind == aftercare.EventSend && a.Step == m.Step && a.Channel == aftercare.SMS && a.Outcome == aftercare.OutcomeSent {
			at = a.At
		}
	}
	return at, true
}

// NoteReply adds a patient's text, by its inbox item, to booking id's
// timeline.
func (c *Client) NoteReply(ctx context.Context, id string, r aftercare.Reply) error {
	_, _, err := c.change(ctx, id, func(rec *aftercare.Record, _ time.Time) (bool, error) {
		if slices.ContainsFunc(rec.Replies, func(o aftercare.Reply) bool { return o.InboxID == r.InboxID }) {
			return false, nil
		}
		rec.Replies = append(rec.Replies, r)
		rec.Note(aftercare.Event{At: r.At, Kind: aftercare.EventReply, Channel: aftercare.SMS, By: byPatient,
			Detail: fmt.Sprintf("inbox item %s (%s)", r.InboxID, r.Urgency)})
		return true, nil
	})
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	return err
}
