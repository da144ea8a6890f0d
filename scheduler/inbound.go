package scheduler

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aftercare/aftercare"
)

// maxReply bounds a stored patient reply; a concatenated SMS is at most ten
// parts of 160.
const maxReply = 1600

// Inbound handles a text from a patient's phone and returns what it asked
// for and the locale of their latest booking (for the answer to HELP):
//
//   - STOP and its variants: the number is opted out of SMS at once, and every
//     SMS not yet sent to it, in any booking, becomes suppressed. Email is
//     unaffected.
//   - START: the number is opted back in; what was suppressed stays so.
//   - YES: the consent acknowledgement is recorded on the latest booking.
//   - anything else is kept on the latest booking for the clinic to read.
func (c *Client) Inbound(ctx context.Context, from, body string) (aftercare.Keyword, string, error) {
	phone, err := aftercare.NormalizePhone(from)
	if err != nil {
		return aftercare.KeywordOther, aftercare.DefaultLocale, aftercare.Errorf(aftercare.EINVALID, "From %s", err)
	}
	kw := aftercare.ParseReply(body)
	now := c.cfg.Now()
	ids, err := c.store.Bookings(ctx, phone)
	if err != nil {
		return kw, aftercare.DefaultLocale, err
	}
	latest, err := c.latest(ctx, phone, ids)
	if err != nil {
		return kw, aftercare.DefaultLocale, err
	}
	locale := aftercare.DefaultLocale
	if latest != nil {
		locale = latest.Booking.Patient.Locale
	}

	switch kw {
	case aftercare.KeywordStop:
		if err := c.store.SetOptOut(ctx, phone, true, now); err != nil {
			return kw, locale, err
		}
		for _, id := range ids {
			if err := c.suppress(ctx, id, phone); err != nil {
				return kw, locale, err
			}
		}
	case aftercare.KeywordStart:
		err = c.store.SetOptOut(ctx, phone, false, now)
	case aftercare.KeywordYes, aftercare.KeywordOther:
		if latest == nil {
			break // a number with no booking (left): nothing to keep it on
		}
		_, _, err = c.change(ctx, latest.ID, func(rec *aftercare.Record, now time.Time) (bool, error) {
			switch {
			case rec.Booking.Patient.Phone != phone:
				return false, nil // the booking changed number meanwhile
			case kw == aftercare.KeywordOther:
				rec.Replies = append(rec.Replies, aftercare.Reply{At: now, Text: clip(strings.TrimSpace(body), maxReply)})
				return true, nil
			case rec.ConsentAcknowledgedAt == nil:
				rec.ConsentAcknowledgedAt = &now
				return true, nil
			}
			return false, nil
		})
		if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
			err = nil // expired since it was read
		}
	}
	return kw, locale, err
}

// latest is the newest booking of ids that still texts phone, or nil: the
// one a patient's reply answers.
func (c *Client) latest(ctx context.Context, phone string, ids []string) (*aftercare.Record, error) {
	for _, id := range ids {
		rec, err := c.store.Get(ctx, id)
		if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
			continue // expired since it was indexed
		}
		if err != nil {
			return nil, err
		}
		if rec.Booking.Patient.Phone == phone {
			return rec, nil
		}
	}
	return nil, nil
}

// suppress turns every scheduled SMS of booking id to phone into suppressed.
func (c *Client) suppress(ctx context.Context, id, phone string) error {
	_, _, err := c.change(ctx, id, func(rec *aftercare.Record, _ time.Time) (bool, error) {
		if rec.Booking.Patient.Phone != phone {
			return false, nil
		}
		return rec.Drop(aftercare.SMS, aftercare.StatusSuppressed, "the patient replied STOP"), nil
	})
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	if err != nil {
		return fmt.Errorf("suppress SMS of %s: %w", id, err)
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
