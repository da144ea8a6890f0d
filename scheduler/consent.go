package scheduler

import (
	"context"
	"time"

	"github.com/aftercare/aftercare"
)

// Record returns everything stored for booking id, patient data included:
// for the consent page, which shows the patient their own booking.
func (c *Client) Record(ctx context.Context, id string) (*aftercare.Record, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	return c.store.Get(ctx, id)
}

// AcknowledgeOnPage records that the patient acknowledged, on the consent
// page, the consent of booking id as it was at fingerprint (the page they
// read), with its evidence. An acknowledgement on the page is final: a
// second one changes nothing. It replaces a YES by SMS, which stays in the
// audit trail. A booking changed or cancelled since the page was shown, or
// whose appointment has begun, is ECONFLICT: consent is given before the
// treatment, and an old link no longer stands for the booking.
func (c *Client) AcknowledgeOnPage(ctx context.Context, id, fingerprint string, ack aftercare.Acknowledgement, ev aftercare.ConsentEvidence) error {
	_, _, err := c.change(ctx, id, func(rec *aftercare.Record, now time.Time) (bool, error) {
		switch {
		case rec.ConsentAcknowledgement != nil && rec.ConsentAcknowledgement.Method == aftercare.AckByPage:
			return false, nil
		case rec.Fingerprint != fingerprint:
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s changed after its consent page was opened", id)
		case rec.Status == aftercare.BookingCancelled:
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s is cancelled", id)
		case !now.Before(rec.Booking.AppointmentAt) || rec.Booking.TreatedAt != nil:
			return false, aftercare.Errorf(aftercare.ECONFLICT, "booking %s: the appointment has begun; consent is given before it", id)
		}
		ack.Method = aftercare.AckByPage
		if ack.At.IsZero() {
			ack.At = now
		}
		ack.At = ack.At.In(rec.Booking.Location())
		rec.ConsentAcknowledgement, rec.ConsentAcknowledgedAt, rec.Evidence = &ack, &ack.At, &ev
		rec.Note(aftercare.Event{At: ack.At, Kind: aftercare.EventAcknowledged, Step: aftercare.StepConsent,
			By: byPatient, Detail: "on the consent page: " + ack.Digest})
		return true, nil
	})
	return err
}

// ConsentRecord returns the acknowledgement of booking id's consent with its
// evidence, for the clinic's own records; ENOTFOUND if the patient has not
// acknowledged it.
func (c *Client) ConsentRecord(ctx context.Context, id string) (*aftercare.ConsentRecord, error) {
	rec, err := c.Record(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.ConsentAcknowledgement == nil {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "booking %s: the patient has not acknowledged the consent yet", id)
	}
	return &aftercare.ConsentRecord{BookingID: id, Acknowledgement: *rec.ConsentAcknowledgement, Evidence: rec.Evidence}, nil
}
