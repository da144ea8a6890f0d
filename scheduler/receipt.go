package scheduler

import (
	"context"
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// Receipt applies a provider's delivery receipt (see aftercare.Receipt) to
// the message it names: delivered, or failed with the provider's reason.
// An SMS that failed is sent once by email instead if the patient opted
// into email, its step has no email of its own, and its deadline has not
// passed. A receipt with another status, for a message that is not sent, or
// seen before (by its key) changes nothing.
func (c *Client) Receipt(ctx context.Context, r aftercare.Receipt) error {
	if r.Status != aftercare.StatusDelivered && r.Status != aftercare.StatusFailed {
		return nil
	}
	first, err := c.store.FirstReceipt(ctx, r.Key)
	if err != nil || !first {
		return err
	}
	ref, err := c.store.ByProvider(ctx, r.ProviderID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil // not ours, or too old
	}
	if err != nil {
		return err
	}
	_, _, err = c.change(ctx, ref.BookingID, func(rec *aftercare.Record, now time.Time) (bool, error) {
		i := slices.IndexFunc(rec.Messages, func(m aftercare.Message) bool {
			return m.Step == ref.Step && m.Channel == ref.Channel && m.ProviderID == r.ProviderID
		})
		if i < 0 || rec.Messages[i].Status != aftercare.StatusSent {
			return false, nil
		}
		m := &rec.Messages[i]
		m.Status = r.Status
		if r.Status == aftercare.StatusDelivered {
			return true, nil
		}
		m.Error = r.Reason
		b := &rec.Booking
		_, hasEmail := rec.Message(m.Step, aftercare.Email)
		if m.Channel == aftercare.SMS && b.Patient.EmailOptIn && b.Patient.Email != "" && !hasEmail &&
			rec.Status != aftercare.BookingCancelled && now.Before(m.Deadline) {
			rec.Messages = append(rec.Messages, aftercare.Message{
				Step: m.Step, Channel: aftercare.Email, SendAt: now.In(b.Location()), Deadline: m.Deadline,
				Status: aftercare.StatusScheduled, Note: "sent by email because the SMS was not delivered",
			})
		}
		return true, nil
	})
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	return err
}
