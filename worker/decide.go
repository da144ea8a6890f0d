package worker

import (
	"errors"
	"time"

	"github.com/aftercare/aftercare"
)

// verdict is what a run does with its message: go ahead and send (outcome
// empty), or end the run with outcome, for reason.
type verdict struct {
	outcome aftercare.Outcome
	// reason is why; providerID is the provider's id of a message it took;
	// digest names the text the provider was given (aftercare.Digest).
	reason, providerID, digest string
	// at is when to send, or to try again (deferred).
	at time.Time
	// err is the error that asks asynq for another run (retry, rate
	// limited).
	err error
	// asked: the run asked the provider about a text in doubt.
	asked bool
}

func (v verdict) send() bool { return v.outcome == "" }

// Reasons the worker gives.
const (
	reasonGone     = "booking record gone"
	reasonChanged  = "booking changed"
	reasonCancel   = "booking cancelled"
	reasonNoSuch   = "no such message in the booking"
	reasonStop     = "the patient replied STOP"
	reasonDied     = "an earlier attempt stopped while sending"
	reasonNoAnswer = "; not sent again, to avoid a duplicate"
)

// decide is the send decision before the claim: a pure function of the
// booking record, the message ref names, its step's quiet-hour policy, the
// clinic's quiet hours and the time. In order:
//
//   - a task of another version of the booking is dropped;
//   - a message found sending was claimed by a run that stopped before
//     recording (its worker died), or got no answer from the provider: it
//     may have gone out, whatever happened since (a cancel, the deadline, a
//     STOP). With ask (the provider can be asked, for a text) it is in
//     doubt, and the run asks (see resolve); otherwise its outcome is
//     unknown;
//   - a cancelled booking's message (but the cancellation notice), a
//     message not in the booking, or one no longer scheduled is dropped;
//   - the deadline and quiet hours are applied at its time (or now, if
//     that is later): it is expired, skipped, or deferred to the end of
//     quiet hours;
//   - otherwise it is sent at its time. asynq keeps due times in whole
//     seconds and may hand a task over a moment early; the run waits.
func decide(rec *aftercare.Record, ref aftercare.MessageRef, policy aftercare.QuietPolicy, quiet aftercare.QuietHours, now time.Time, ask bool) verdict {
	msg, ok := rec.Message(ref.Step, ref.Channel)
	switch {
	case rec.Version != ref.Version:
		return verdict{outcome: aftercare.OutcomeDropped, reason: reasonChanged}
	case ok && msg.Status == aftercare.StatusSending:
		return inDoubt(ask, reasonDied)
	case rec.Status == aftercare.BookingCancelled && !ref.SurvivesCancel():
		return verdict{outcome: aftercare.OutcomeDropped, reason: reasonCancel}
	case !ok:
		return verdict{outcome: aftercare.OutcomeDropped, reason: reasonNoSuch}
	case msg.Status != aftercare.StatusScheduled:
		return verdict{outcome: aftercare.OutcomeDropped, reason: "message already " + string(msg.Status)}
	}
	due := msg.SendAt
	if now.After(due) {
		due = now
	}
	at, status, note := aftercare.Place(due, msg.Deadline, policy, quiet, rec.Booking.Location())
	switch {
	case status == aftercare.StatusExpired:
		return verdict{outcome: aftercare.OutcomeExpired, reason: note}
	case status == aftercare.StatusSkipped:
		return verdict{outcome: aftercare.OutcomeSkipped, reason: note}
	case at.After(due):
		return verdict{outcome: aftercare.OutcomeDeferred, reason: note, at: at}
	}
	return verdict{at: at}
}

// claimed is the decision once the claim has answered with the status the
// message had (prev) and whether its number replied STOP: only a message
// the claim took from scheduled is sent. One found sending was claimed by
// an earlier run that stopped; one otherwise changed (the booking was
// cancelled or changed under this run) is dropped; a text to a number that
// said STOP is suppressed, and no text goes.
func claimed(prev aftercare.MessageStatus, optedOut, ask bool) verdict {
	switch {
	case prev == aftercare.StatusSending:
		return inDoubt(ask, reasonDied)
	case prev != aftercare.StatusScheduled:
		return verdict{outcome: aftercare.OutcomeDropped, reason: "message " + string(prev)}
	case optedOut:
		return verdict{outcome: aftercare.OutcomeSuppressed, reason: reasonStop}
	}
	return verdict{}
}

// inDoubt is the verdict on a message that may have gone out: in doubt if
// the provider can be asked (ask), else outcome unknown: never sent twice.
func inDoubt(ask bool, reason string) verdict {
	if ask {
		return verdict{outcome: aftercare.OutcomeInDoubt, reason: reason}
	}
	return verdict{outcome: aftercare.OutcomeUnknown, reason: reason + reasonNoAnswer}
}

// sent is the verdict on the provider's answer: the provider id of a
// message it took; failed for a refusal it would repeat; in doubt (or
// outcome unknown) when it may have taken the message without saying so
// (sending again could deliver it twice); and for anything else, another
// try.
func sent(providerID string, err error, ask bool) verdict {
	switch {
	case err == nil:
		return verdict{outcome: aftercare.OutcomeSent, providerID: providerID}
	case errors.Is(err, aftercare.ErrUncertain):
		v := inDoubt(ask, errorText(err))
		if v.outcome == aftercare.OutcomeInDoubt {
			v.err = err // a later run asks the provider
		}
		return v
	case errors.Is(err, aftercare.ErrPermanent):
		return verdict{outcome: aftercare.OutcomeFailed, reason: errorText(err)}
	}
	return verdict{outcome: aftercare.OutcomeRetry, reason: errorText(err), err: err}
}

// budget ends a retry that cannot happen: on the task's last run the
// message fails with "retries exhausted"; when its deadline comes before
// the queue could run it again (a second from now, at the soonest), it
// expires. Other verdicts pass as they are.
func budget(v verdict, last bool, deadline, now time.Time) verdict {
	switch {
	case v.outcome == aftercare.OutcomeInDoubt && last && v.at.IsZero():
		return verdict{outcome: aftercare.OutcomeUnknown, reason: v.reason + "; no run is left to ask the provider" + reasonNoAnswer}
	case v.outcome != aftercare.OutcomeRetry:
		return v
	case last:
		return verdict{outcome: aftercare.OutcomeFailed, reason: reasonExhausted + v.reason, digest: v.digest}
	case deadline.Sub(now) < minRetry:
		return verdict{outcome: aftercare.OutcomeExpired, reason: "its send-by deadline comes before it can be tried again: " + v.reason, digest: v.digest}
	}
	return v
}

// minRetry is the soonest the task queue runs a task again, with room to
// spare: a retry due closer to the deadline than this cannot be made.
const minRetry = 3 * time.Second

// reasonExhausted starts the reason of a message whose retries ran out.
const reasonExhausted = "retries exhausted: "

// errorText is what is stored on the message: the provider code and cause.
func errorText(err error) string {
	if se, ok := errors.AsType[*aftercare.SendError](err); ok {
		return aftercare.Redact(se.Code + ": " + se.Err.Error())
	}
	return aftercare.Redact(err.Error())
}
