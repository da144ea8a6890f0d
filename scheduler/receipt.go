package scheduler

import (
	"context"
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// Receipt applies a provider's delivery receipt for the message it knows as
// providerID: "delivered" marks it delivered; "undelivered" or "failed"
// marks it failed with the carrier's error code and, for an SMS, sends the
// same step once by email if the patient opted into email, that step has no
// email of its own, and its deadline has not passed. Other statuses
// ("queued", "sent", ...) change nothing. key identifies the callback: a
// receipt seen before changes nothing either.
func (c *Client) Receipt(ctx context.Context, key, providerID, status, errorCode string) error {
	var to aftercare.MessageStatus
	switch status {
	case "delivered":
		to = aftercare.StatusDelivered
	case "undelivered", "failed":
		to = aftercare.StatusFailed
	default:
		return nil
	}
	first, err := c.store.FirstReceipt(ctx, key)
	if err != nil || !first {
		return err
	}
	ref, err := c.store.ByProvider(ctx, providerID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil // not ours, or too old
	}
	if err != nil {
		return err
	}
	_, _, err = c.change(ctx, ref.BookingID, func(rec *aftercare.Record, now time.Time) (bool, error) {
		i := slices.IndexFunc(rec.Messages, func(m aftercare.Message) bool {
			return m.Step == ref.Step && m.Channel == ref.Channel && m.ProviderID == providerID
		})
		if i < 0 || rec.Messages[i].Status != aftercare.StatusSent {
			return false, nil
		}
		m := &rec.Messages[i]
		m.Status = to
		if to == aftercare.StatusDelivered {
			return true, nil
		}
		m.Error = "carrier " + status
		if errorCode != "" {
			m.Error = "twilio:" + errorCode + ": " + m.Error
		}
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
