package aftercare

// Outcome is how one run of a send task ended. Each run adds one to the
// metrics; a run that changed its message also leaves one in the booking's
// history.
type Outcome string

// Outcomes of a run. The stored history of records written before
// outcome_unknown existed says "uncertain"; the store reads it as
// OutcomeUnknown.
const (
	OutcomeSent        Outcome = "sent"            // the provider took it
	OutcomeFailed      Outcome = "failed"          // refused for good; not retried
	OutcomeUnknown     Outcome = "outcome_unknown" // the provider may have it; not sent again
	OutcomeRetry       Outcome = "retry"           // failed for now; tried again
	OutcomeExpired     Outcome = "expired"         // its send-by deadline passed
	OutcomeSkipped     Outcome = "skipped"         // its step is left out in quiet hours
	OutcomeSuppressed  Outcome = "suppressed"      // the number replied STOP
	OutcomeDeferred    Outcome = "deferred"        // quiet hours; tried again when they end
	OutcomeRateLimited Outcome = "rate_limited"    // the channel's rate limit; tried again shortly
	OutcomeDropped     Outcome = "dropped"         // nothing to send: cancelled, changed, or done already
	// OutcomeInDoubt: the provider may have the text (no answer, or a run
	// that stopped); it stays sending while aftercare asks the provider.
	OutcomeInDoubt Outcome = "in_doubt"
)

// Status is the status a run with outcome o leaves its message in, and
// false for the outcomes that leave the message as it was (deferred, rate
// limited, dropped).
func (o Outcome) Status() (MessageStatus, bool) {
	switch o {
	case OutcomeSent:
		return StatusSent, true
	case OutcomeFailed:
		return StatusFailed, true
	case OutcomeUnknown:
		return StatusOutcomeUnknown, true
	case OutcomeRetry:
		return StatusScheduled, true
	case OutcomeExpired:
		return StatusExpired, true
	case OutcomeSkipped:
		return StatusSkipped, true
	case OutcomeSuppressed:
		return StatusSuppressed, true
	}
	return "", false
}

// Change is one status change of one message, made by a run of its task,
// as the store applies it: in one step, only if the message is still in
// status From. The booking may have been cancelled, or changed to another
// version, since the run read it; the change then makes IfCancelled or
// IfSuperseded instead of To (a zero Target leaves the message as it is).
// MessageRef.Change fills these in.
type Change struct {
	Ref                           MessageRef
	From                          MessageStatus
	To, IfCancelled, IfSuperseded Target
	// ProviderID is the provider's id of a sent message, and Digest the
	// digest of its text (see Digest).
	ProviderID, Digest string
	// Event is the run's entry in the booking's history, added with the
	// change (or alone, if the message was no longer in status From).
	Event Event
}

// Target is a status a change moves a message to, and the reason kept
// with it (empty clears the message's error).
type Target struct {
	Status MessageStatus
	Reason string
}

// Change returns the change from status from to status to, with reason,
// for the message r names. The rules:
//
//   - from scheduled, a change applies only to the task's own version of a
//     booking that is not cancelled (a late task of an old version must not
//     expire the new version's message);
//   - from sending, the run owns the message (it claimed it), and what
//     happened is recorded whatever became of the booking; except a hand
//     back for a retry (to scheduled), which no task would pick up after a
//     cancel or reschedule: it ends cancelled, or failed, instead.
//
// The cancellation notice is the one message not stopped by its booking's
// cancel (SurvivesCancel).
func (r MessageRef) Change(from, to MessageStatus, reason string) Change {
	c := Change{Ref: r, From: from, To: Target{to, reason}}
	switch {
	case from == StatusScheduled:
		// A change of a cancelled or superseded booking's message is left
		// undone: IfCancelled and IfSuperseded stay zero.
	case to == StatusScheduled:
		c.IfCancelled = Target{StatusCancelled, reason}
		c.IfSuperseded = Target{StatusFailed, reason + "; not retried because the booking changed meanwhile"}
	default:
		c.IfCancelled, c.IfSuperseded = c.To, c.To
	}
	if r.SurvivesCancel() {
		c.IfCancelled = c.To
	}
	return c
}
