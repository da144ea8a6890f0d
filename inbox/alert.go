package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aftercare/aftercare"
)

// Alerts go out at least once: a worker that dies while sending one sends
// it again, since a doubled alert costs less than a missing one.

// alert plans the alerts about a new item that needs a person: round 0 at
// once, and for an urgent item the check that alerts again after
// ReescalateAfter.
func (in *Inbox) alert(ctx context.Context, item *aftercare.InboxItem) error {
	now := in.cfg.Now()
	refs := in.round(item, 0)
	if item.Urgency == aftercare.Urgent {
		refs = append(refs, aftercare.AlertRef{ItemID: item.ID, Round: 1})
	}
	if len(refs) == 0 {
		in.log.Warn("a patient's text needs a person and no alert is set up (clinic profile: alerts)", "inbox_item", item.ID)
	}
	return in.plan(ctx, refs, now)
}

// plan puts alert tasks in the queue: alerts due now, checks
// ReescalateAfter from now.
func (in *Inbox) plan(ctx context.Context, refs []aftercare.AlertRef, now time.Time) error {
	for _, ref := range refs {
		at := now
		if ref.Channel == "" {
			at = now.Add(in.cfg.Clinic.Alerts.ReescalateAfter)
		}
		if err := in.cfg.Alerts.Alert(ctx, ref, at); err != nil {
			return fmt.Errorf("plan alert %s: %w", ref.TaskID(), err)
		}
	}
	return nil
}

// round lists the alerts of round n about item: an email to the care
// inbox, and for an urgent item an SMS to the on-call phone, each if the
// clinic has one.
func (in *Inbox) round(item *aftercare.InboxItem, n int) []aftercare.AlertRef {
	var refs []aftercare.AlertRef
	if in.cfg.Clinic.Alerts.Email != "" {
		refs = append(refs, aftercare.AlertRef{ItemID: item.ID, Round: n, Channel: aftercare.Email})
	}
	if item.Urgency == aftercare.Urgent && in.cfg.Clinic.Alerts.OnCallPhone != "" {
		refs = append(refs, aftercare.AlertRef{ItemID: item.ID, Round: n, Channel: aftercare.SMS})
	}
	return refs
}

// Handle runs an alert task: a round's check alerts again about an item
// still open and plans the next check, unless the item is a message that
// has since reached the patient (see settled); an alert goes to its channel
// unless the item was resolved before a later round's alert went out. An
// item gone (expired) ends its alerts.
func (in *Inbox) Handle(ctx context.Context, ref aftercare.AlertRef, _ aftercare.Run) error {
	item, err := in.cfg.Store.InboxItem(ctx, ref.ItemID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	open := item.Status == aftercare.InboxOpen
	switch {
	case ref.Channel == "" && open:
		if note := in.settled(ctx, item); note != "" {
			_, err := in.Resolve(ctx, item.ID, "aftercare", note)
			return err
		}
		return in.escalate(ctx, item, ref.Round)
	case ref.Channel == "" || (ref.Round > 0 && !open):
		return nil
	}
	return in.send(ctx, item, ref)
}

// settled says how the step of delivery item item reached the patient after
// all, since the item was made (a resend, or a fallback, went out), or ""
// if it has not: then a person must still look. A booking that cannot be
// read counts as not reached.
func (in *Inbox) settled(ctx context.Context, item *aftercare.InboxItem) string {
	if item.Kind != aftercare.InboxDelivery || item.BookingID == "" {
		return ""
	}
	rec, err := in.cfg.Bookings.Record(ctx, item.BookingID)
	if err != nil {
		if aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
			in.log.Error("inbox: reading the booking of a delivery item", "inbox_item", item.ID, "error", aftercare.Redact(err.Error()))
		}
		return ""
	}
	for _, m := range rec.Messages {
		if m.Step == item.Step && (m.Status == aftercare.StatusSent || m.Status == aftercare.StatusDelivered) && m.ClaimedAt.After(item.ReceivedAt) {
			return fmt.Sprintf("the %s reached the patient after all: its %s was %s at %s", m.Step, m.Channel, m.Status,
				m.ClaimedAt.In(in.zone).Format("Mon Jan 2 15:04 MST"))
		}
	}
	return ""
}

// escalate sends round n of the alerts about an urgent item nobody has
// resolved, and plans the check of round n+1.
func (in *Inbox) escalate(ctx context.Context, item *aftercare.InboxItem, n int) error {
	now := in.cfg.Now()
	if err := in.plan(ctx, append(in.round(item, n), aftercare.AlertRef{ItemID: item.ID, Round: n + 1}), now); err != nil {
		return err
	}
	in.log.Warn("urgent patient text still open: alerting again", "inbox_item", item.ID, "round", n,
		"open_for", now.Sub(item.ReceivedAt).Round(time.Second))
	return nil
}

// send renders and sends one alert, and counts it on the item. A refusal
// the provider would repeat ends the task (ErrFinal); anything else is
// tried again.
func (in *Inbox) send(ctx context.Context, item *aftercare.InboxItem, ref aftercare.AlertRef) error {
	out, err := in.cfg.Renderer.Alert(item, ref.Round, ref.Channel)
	if err != nil {
		return fmt.Errorf("%w: %v", aftercare.ErrFinal, err)
	}
	out.ID = ref.TaskID()
	sender := in.cfg.Email
	if ref.Channel == aftercare.SMS {
		sender = in.cfg.SMS
	}
	if _, err := sender.Send(ctx, out); err != nil {
		in.log.Error("alert not sent", "inbox_item", item.ID, "round", ref.Round, "channel", ref.Channel, "error", aftercare.Redact(err.Error()))
		if errors.Is(err, aftercare.ErrPermanent) {
			return fmt.Errorf("%w: %v", aftercare.ErrFinal, err)
		}
		return err
	}
	now := in.cfg.Now()
	_, err = in.cfg.Store.UpdateInboxItem(ctx, item.ID, func(item *aftercare.InboxItem) (time.Time, error) {
		item.Alerts++
		item.LastAlertAt = &now
		if item.Status == aftercare.InboxResolved {
			return in.expiry(item), nil
		}
		return time.Time{}, nil
	})
	if err != nil && aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
		// Sent: a retry would only send it again. The count is off by one.
		in.log.Error("alert sent but not counted on its item", "inbox_item", item.ID, "error", err)
	}
	in.log.Info("alert sent", "inbox_item", item.ID, "round", ref.Round, "channel", ref.Channel, "urgency", item.Urgency)
	return nil
}
