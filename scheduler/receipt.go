package scheduler

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/aftercare/aftercare"
)

// Receipt applies a provider's delivery receipt (see aftercare.Receipt) to
// the message it names: delivered, or failed with the provider's reason. A
// failed SMS goes on to its step's fallback, if it has one, and the clinic
// is told. A receipt with another status, for a message that is not sent,
// or seen before (by its key) changes nothing.
//
// A receipt can come before the worker has recorded the send (Twilio calls
// back fast): it is kept and applied when the send is recorded (Sent). A
// receipt counts as seen only once it is applied or kept.
func (c *Client) Receipt(ctx context.Context, r aftercare.Receipt) error {
	if r.Status != aftercare.StatusDelivered && r.Status != aftercare.StatusFailed {
		return nil
	}
	first, err := c.store.FirstReceipt(ctx, r.Key)
	if err != nil || !first {
		return err
	}
	if err := c.applyReceipt(ctx, r); err != nil {
		if ferr := c.store.ForgetReceipt(context.WithoutCancel(ctx), r.Key); ferr != nil {
			return ferr
		}
		return err
	}
	return nil
}

func (c *Client) applyReceipt(ctx context.Context, r aftercare.Receipt) error {
	ref, err := c.store.ByProvider(ctx, r.ProviderID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		// Not recorded yet (or not ours, or too old: then it is never used).
		return c.store.KeepReceipt(ctx, r)
	}
	if err != nil {
		return err
	}
	var rec *aftercare.Record
	failed := false
	_, _, err = c.change(ctx, ref.BookingID, func(cur *aftercare.Record, now time.Time) (bool, error) {
		rec = cur
		i := slices.IndexFunc(cur.Messages, func(m aftercare.Message) bool {
			return m.Step == ref.Step && m.Channel == ref.Channel && m.ProviderID == r.ProviderID
		})
		if i < 0 || cur.Messages[i].Status != aftercare.StatusSent {
			return false, nil
		}
		m := &cur.Messages[i]
		m.Status = r.Status
		cur.Note(aftercare.Event{At: now, Kind: aftercare.EventReceipt, Step: m.Step, Channel: m.Channel, Status: r.Status, By: "twilio",
			Detail: strings.TrimSuffix(string(r.Status)+": "+r.Reason, ": ")})
		if r.Status == aftercare.StatusDelivered {
			return true, nil
		}
		m.Error, failed = r.Reason, true
		c.fallback(cur, m.Step, m.Channel, now)
		return true, nil
	})
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	if err != nil || !failed {
		return err
	}
	ref.Version = rec.Version
	return c.report(ctx, rec, ref, aftercare.StatusFailed, r.Reason)
}
