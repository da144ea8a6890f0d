package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/aftercare/aftercare"
)

// Report puts a message that may not have reached the patient in the
// inbox, for a person at the clinic, and alerts the care inbox by email. A
// clinical step's problem (the consent, a safety text) is urgent, and so
// reaches the on-call phone too, again until someone takes it: the patient
// may be without what keeps them safe. The same problem reported again is
// one item.
func (in *Inbox) Report(ctx context.Context, p aftercare.Problem) error {
	if p.At.IsZero() {
		p.At = in.cfg.Now()
	}
	id, fresh, err := in.cfg.Store.ReserveInboxID(ctx, "problem:"+p.Ref.TaskID()+":"+string(p.Status), aftercare.NewInboxID(p.At))
	if err != nil {
		return err
	}
	if !fresh {
		if _, err := in.cfg.Store.InboxItem(ctx, id); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
			return err // reported before (nil), or the store failed
		}
	}
	item := &aftercare.InboxItem{
		ID: id, Kind: aftercare.InboxDelivery, Status: aftercare.InboxOpen, Urgency: aftercare.Normal, ReceivedAt: p.At,
		BookingID: p.Ref.BookingID, Step: p.Ref.Step, Channel: p.Ref.Channel, MessageStatus: p.Status,
		Text: describe(p), Action: "told the clinic",
	}
	if p.Clinical {
		item.Urgency = aftercare.Urgent
	}
	if err := in.cfg.Store.PutInboxItem(ctx, item, time.Time{}); err != nil {
		return err
	}
	in.log.Warn("a message needs a person", "inbox_item", item.ID, "booking", p.Ref.BookingID, "step", p.Ref.Step,
		"channel", p.Ref.Channel, "status", p.Status)
	return in.alert(ctx, item)
}

// describe says what happened to the message, for staff. It names no
// patient: the booking id leads to them.
func describe(p aftercare.Problem) string {
	what := fmt.Sprintf("The %s %s of booking %s", p.Ref.Step, p.Ref.Channel, p.Ref.BookingID)
	switch p.Status {
	case aftercare.StatusOutcomeUnknown:
		return what + " may or may not have reached the patient: the provider took the request and never said (" + p.Reason +
			"). It is not sent again, to avoid a duplicate. Check with the patient, or resend it on purpose."
	case aftercare.StatusExpired:
		return what + " could not go before its send-by deadline (" + p.Reason + "), and nothing else of this step reaches the patient."
	}
	return what + " failed (" + p.Reason + ") and nothing else of this step reaches the patient. Check the contact details, or resend it on purpose."
}
