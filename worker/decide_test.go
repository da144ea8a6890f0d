package worker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
)

// TestDecide covers the send decision before the claim, without Redis.
func TestDecide(t *testing.T) {
	t.Parallel()
	madrid, err := aftercare.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	noon := time.Date(2026, 12, 1, 12, 0, 0, 0, madrid)
	night := time.Date(2026, 12, 1, 23, 0, 0, 0, madrid)
	morning := time.Date(2026, 12, 2, 8, 0, 0, 0, madrid)
	quiet := aftercare.QuietHours{Start: "21:00", End: "08:00"}
	ref := aftercare.MessageRef{BookingID: "bk_d", Version: 2, Step: "day1", Channel: aftercare.SMS}

	tests := []struct {
		name    string
		edit    func(rec *aftercare.Record, ref *aftercare.MessageRef)
		policy  aftercare.QuietPolicy
		now     time.Time
		outcome aftercare.Outcome
		reason  string // part of the reason
		at      time.Time
	}{
		{"due: send", nil, aftercare.QuietDefer, noon, "", "", noon},
		{"handed over early: send at its time", func(rec *aftercare.Record, _ *aftercare.MessageRef) {
			rec.Messages[0].SendAt = noon.Add(400 * time.Millisecond)
		}, aftercare.QuietDefer, noon, "", "", noon.Add(400 * time.Millisecond)},
		{"late but before the deadline: send now", nil, aftercare.QuietDefer, noon.Add(time.Hour), "", "", noon.Add(time.Hour)},
		{"task of an older version", func(_ *aftercare.Record, ref *aftercare.MessageRef) { ref.Version = 1 },
			aftercare.QuietDefer, noon, aftercare.OutcomeDropped, "booking changed", time.Time{}},
		{"booking cancelled", func(rec *aftercare.Record, _ *aftercare.MessageRef) { rec.Status = aftercare.BookingCancelled },
			aftercare.QuietDefer, noon, aftercare.OutcomeDropped, "cancelled", time.Time{}},
		{"the cancellation notice of a cancelled booking", func(rec *aftercare.Record, ref *aftercare.MessageRef) {
			rec.Status = aftercare.BookingCancelled
			rec.Messages[0].Step, ref.Step = aftercare.StepCancellation, aftercare.StepCancellation
		}, aftercare.QuietDefer, noon, "", "", noon},
		{"no such message", func(_ *aftercare.Record, ref *aftercare.MessageRef) { ref.Channel = aftercare.Email },
			aftercare.QuietDefer, noon, aftercare.OutcomeDropped, "no such message", time.Time{}},
		{"already sent", func(rec *aftercare.Record, _ *aftercare.MessageRef) { rec.Messages[0].Status = aftercare.StatusSent },
			aftercare.QuietDefer, noon, aftercare.OutcomeDropped, "already sent", time.Time{}},
		{"found sending: in doubt", func(rec *aftercare.Record, _ *aftercare.MessageRef) { rec.Messages[0].Status = aftercare.StatusSending },
			aftercare.QuietDefer, noon, aftercare.OutcomeUnknown, "stopped while sending", time.Time{}},
		{"found sending after a cancel: still in doubt", func(rec *aftercare.Record, _ *aftercare.MessageRef) {
			rec.Messages[0].Status, rec.Status = aftercare.StatusSending, aftercare.BookingCancelled
		}, aftercare.QuietDefer, noon, aftercare.OutcomeUnknown, "stopped while sending", time.Time{}},
		{"found sending past the deadline: still in doubt", func(rec *aftercare.Record, _ *aftercare.MessageRef) {
			rec.Messages[0].Status = aftercare.StatusSending
		}, aftercare.QuietDefer, noon.Add(48 * time.Hour), aftercare.OutcomeUnknown, "stopped while sending", time.Time{}},
		{"past the deadline", nil, aftercare.QuietDefer, noon.Add(24 * time.Hour), aftercare.OutcomeExpired, "deadline", time.Time{}},
		{"quiet hours, defer", nil, aftercare.QuietDefer, night, aftercare.OutcomeDeferred, "end of quiet hours", morning},
		{"quiet hours, skip", nil, aftercare.QuietSkip, night, aftercare.OutcomeSkipped, "quiet hours", time.Time{}},
		{"quiet hours, ignore", nil, aftercare.QuietIgnore, night, "", "", night},
		{"quiet hours end after the deadline", func(rec *aftercare.Record, _ *aftercare.MessageRef) {
			rec.Messages[0].Deadline = night.Add(time.Hour)
		}, aftercare.QuietDefer, night, aftercare.OutcomeExpired, "quiet hours", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &aftercare.Record{
				Booking: aftercare.Booking{ID: "bk_d", Patient: aftercare.Patient{Timezone: "Europe/Madrid"}},
				Timeline: aftercare.Timeline{ID: "bk_d", Version: 2, Status: aftercare.BookingScheduled, Messages: []aftercare.Message{
					{Step: "day1", Channel: aftercare.SMS, SendAt: noon, Deadline: noon.Add(24 * time.Hour), Status: aftercare.StatusScheduled},
				}},
			}
			ref := ref
			if tt.edit != nil {
				tt.edit(rec, &ref)
			}
			v := decide(rec, ref, tt.policy, quiet, tt.now, false)
			if v.outcome != tt.outcome || !strings.Contains(v.reason, tt.reason) || !v.at.Equal(tt.at) {
				t.Errorf("decide = %s (%q) at %s, want %s (%q) at %s", v.outcome, v.reason, v.at, tt.outcome, tt.reason, tt.at)
			}
			if tt.reason == "" && v.reason != "" || tt.outcome != "" && v.reason == "" {
				t.Errorf("reason %q: a verdict that ends the run says why, and only that one", v.reason)
			}
		})
	}
}

// TestClaimed covers the decision once the claim has answered.
func TestClaimed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prev     aftercare.MessageStatus
		optedOut bool
		outcome  aftercare.Outcome
	}{
		{aftercare.StatusScheduled, false, ""},
		{aftercare.StatusScheduled, true, aftercare.OutcomeSuppressed},
		{aftercare.StatusSending, false, aftercare.OutcomeUnknown},
		{aftercare.StatusSending, true, aftercare.OutcomeUnknown}, // it may have gone out before the STOP
		{aftercare.StatusCancelled, false, aftercare.OutcomeDropped},
		{aftercare.StatusSent, true, aftercare.OutcomeDropped},
	}
	for _, tt := range tests {
		if v := claimed(tt.prev, tt.optedOut, false); v.outcome != tt.outcome {
			t.Errorf("claimed(%s, opted out %v) = %s, want %s", tt.prev, tt.optedOut, v.outcome, tt.outcome)
		}
	}
}

// TestSent covers the verdict on the provider's answer.
func TestSent(t *testing.T) {
	t.Parallel()
	sendErr := func(class error, code string) error {
		return &aftercare.SendError{Class: class, Code: code, Err: errors.New("provider says no")}
	}
	tests := []struct {
		name    string
		err     error
		outcome aftercare.Outcome
		reason  string
		retry   bool
	}{
		{"taken", nil, aftercare.OutcomeSent, "", false},
		{"permanent", sendErr(aftercare.ErrPermanent, "twilio:21211"), aftercare.OutcomeFailed, "twilio:21211: provider says no", false},
		{"no answer", sendErr(aftercare.ErrUncertain, "twilio:no-answer"), aftercare.OutcomeUnknown, "twilio:no-answer: provider says no; not sent again", false},
		{"transient", sendErr(aftercare.ErrTransient, "twilio:20500"), aftercare.OutcomeRetry, "twilio:20500: provider says no", true},
		{"rate limited", sendErr(aftercare.ErrRateLimited, "twilio:20429"), aftercare.OutcomeRetry, "twilio:20429", true},
		{"unclassified, with a number in it", errors.New("dial +15555550123 failed"), aftercare.OutcomeRetry, "dial +1555•••••23 failed", true},
	}
	for _, tt := range tests {
		v := sent("SM1", tt.err, false)
		if (v.providerID == "SM1") != (tt.err == nil) {
			t.Errorf("%s: provider id %q", tt.name, v.providerID)
		}
		if v.outcome != tt.outcome || !strings.HasPrefix(v.reason, tt.reason) || (v.err != nil) != tt.retry {
			t.Errorf("%s: sent = %s (%q, retry %v), want %s (%q, retry %v)", tt.name, v.outcome, v.reason, v.err != nil, tt.outcome, tt.reason, tt.retry)
		}
	}
}

// TestBudget: a retry that cannot happen ends the message.
func TestBudget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	retry := verdict{outcome: aftercare.OutcomeRetry, reason: "twilio:20500: internal", err: errors.New("x")}
	tests := []struct {
		name     string
		v        verdict
		last     bool
		deadline time.Time
		outcome  aftercare.Outcome
		reason   string
	}{
		{"retry with time to spare", retry, false, now.Add(time.Hour), aftercare.OutcomeRetry, "twilio:20500"},
		{"the last run", retry, true, now.Add(time.Hour), aftercare.OutcomeFailed, "retries exhausted: twilio:20500"},
		{"the deadline comes first", retry, false, now.Add(2 * time.Second), aftercare.OutcomeExpired, "comes before it can be tried again: twilio:20500"},
		{"a send is a send", verdict{outcome: aftercare.OutcomeSent, providerID: "SM1"}, true, now, aftercare.OutcomeSent, ""},
	}
	for _, tt := range tests {
		v := budget(tt.v, tt.last, tt.deadline, now)
		if v.outcome != tt.outcome || !strings.Contains(v.reason, tt.reason) || (v.outcome != aftercare.OutcomeRetry && v.err != nil) {
			t.Errorf("%s: budget = %s (%q, err %v), want %s (%q)", tt.name, v.outcome, v.reason, v.err, tt.outcome, tt.reason)
		}
	}
}

// TestInDoubt: where the provider can be asked (a text, with a Finder), a
// message that may have gone out is in doubt, not unknown; an email stays
// unknown.
func TestInDoubt(t *testing.T) {
	t.Parallel()
	noAnswer := &aftercare.SendError{Class: aftercare.ErrUncertain, Code: "twilio:no-answer", Err: errors.New("timeout")}
	for _, tt := range []struct {
		name string
		v    verdict
		want aftercare.Outcome
	}{
		{"claimed, ask", claimed(aftercare.StatusSending, false, true), aftercare.OutcomeInDoubt},
		{"claimed, email", claimed(aftercare.StatusSending, false, false), aftercare.OutcomeUnknown},
		{"no answer, ask", sent("", noAnswer, true), aftercare.OutcomeInDoubt},
		{"no answer, email", sent("", noAnswer, false), aftercare.OutcomeUnknown},
		{"in doubt on the last run", budget(sent("", noAnswer, true), true, time.Now().Add(time.Hour), time.Now()), aftercare.OutcomeUnknown},
	} {
		if tt.v.outcome != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, tt.v.outcome, tt.want)
		}
	}
}
