// Package worker sends planned messages: it turns the reference a send task
// carries back into a rendered message, decides whether it may go, claims
// it, hands it to the channel's Sender and records what happened.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aftercare/aftercare"
)

// Store is the booking state the worker reads and changes. The redisstore
// package implements it.
type Store interface {
	Get(ctx context.Context, id string) (*aftercare.Record, error)
	// Claim moves a scheduled message to sending and returns the status it
	// had; StatusCancelled if the booking is cancelled or at another version.
	// Given a phone number, it also reports, in the same round trip,
	// whether the number replied STOP.
	Claim(ctx context.Context, ref aftercare.MessageRef, phone string) (prev aftercare.MessageStatus, optedOut bool, err error)
	// Transition makes a change (see aftercare.Change), reporting false if
	// the message was no longer in status c.From, and adds c.Attempt to the
	// booking's audit trail either way, in one round trip. A sent SMS's
	// provider id is linked to the message, for delivery receipts.
	Transition(ctx context.Context, c aftercare.Change) (bool, error)
	// SetOptOut records that a number replied STOP (out) or opted back in.
	SetOptOut(ctx context.Context, phone string, out bool, at time.Time) error
}

// Sender delivers a rendered message and returns the provider's id for it.
// Errors should be *aftercare.SendError; any other error counts as
// transient.
type Sender interface {
	Send(ctx context.Context, msg aftercare.Outgoing) (providerID string, err error)
}

// Limiter paces sends on a channel: Reserve takes the next slot and returns
// how long until it comes, or an ErrRateLimited SendError when the caller
// should come back later.
type Limiter interface {
	Reserve(ctx context.Context, ch aftercare.Channel) (time.Duration, error)
}

// Metrics records the outcome of each run of a send task.
type Metrics interface {
	Attempt(step string, ch aftercare.Channel, outcome aftercare.Outcome, provider, late time.Duration)
}

// Followups is what comes after a message ends. The scheduler implements
// it.
type Followups interface {
	// Ended is told that message ref ended in status st, for reason, without
	// surely reaching the patient: it plans the step's fallback if it has
	// one, and tells the clinic when the patient may miss what they need.
	Ended(ctx context.Context, ref aftercare.MessageRef, st aftercare.MessageStatus, reason string) error
	// Sent is told that the provider took message ref as providerID: a
	// delivery receipt that came before the record is applied now.
	Sent(ctx context.Context, ref aftercare.MessageRef, providerID string) error
}

// Renderer renders one step of a booking for one channel.
type Renderer interface {
	// Render renders a step; first marks the booking's first SMS.
	Render(b *aftercare.Booking, step string, ch aftercare.Channel, first bool) (aftercare.Outgoing, error)
}

// Config holds a Worker's dependencies.
type Config struct {
	Store    Store
	Renderer Renderer
	SMS      Sender
	Email    Sender
	// Protocols give each step's quiet-hour policy, checked again right
	// before sending (a retry can drift into quiet hours).
	Protocols map[string]aftercare.Protocol
	// Clinic gives the quiet hours (read on the patient's clock) and
	// whether they apply to emails.
	Clinic aftercare.Clinic
	// Limiter, if set, paces the sends of each channel.
	Limiter Limiter
	// Followups, if set, hears of every message that ends.
	Followups Followups
	// Metrics, if set, counts each run's outcome, and for a send the
	// provider call's duration and how late it went out.
	Metrics Metrics
	Logger  *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Worker handles send tasks. It is safe for concurrent use.
type Worker struct {
	store     Store
	render    Renderer
	senders   map[aftercare.Channel]Sender
	protocols map[string]aftercare.Protocol
	clinic    aftercare.Clinic
	limiter   Limiter
	followups Followups
	metrics   Metrics
	log       *slog.Logger
	now       func() time.Time
}

// New returns a Worker.
func New(cfg Config) *Worker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{
		store:     cfg.Store,
		render:    cfg.Renderer,
		senders:   map[aftercare.Channel]Sender{aftercare.SMS: cfg.SMS, aftercare.Email: cfg.Email},
		protocols: cfg.Protocols,
		clinic:    cfg.Clinic,
		limiter:   cfg.Limiter,
		followups: cfg.Followups,
		metrics:   cfg.Metrics,
		log:       cfg.Logger,
		now:       cfg.Now,
	}
}

// Handle sends the message ref names, at most once, in run (its number,
// and whether it is the task's last). Its error tells the task queue what
// comes next (see aftercare.ErrFinal):
//
//  1. load the booking and decide (see decide): drop the task, record the
//     message expired, skipped or (found sending) outcome unknown, defer it
//     past quiet hours, or send it at its time;
//  2. wait for the channel's rate limit, then claim the message (scheduled
//     -> sending) in one Redis round trip that re-checks the version and the
//     cancellation, so a change racing this run wins or loses cleanly, and
//     for an SMS reads the opt-out list (see claimed);
//  3. render, send, and record the provider's answer (see sent): sent with
//     the provider id; failed, not retried (a provider's "unsubscribed" also
//     opts the number out); outcome unknown; or scheduled again, to retry,
//     unless this was the last run or the deadline comes first (see
//     budget).
//
// A message that ends without surely reaching the patient goes on to the
// Followups: its step's fallback, or a person at the clinic.
func (w *Worker) Handle(ctx context.Context, ref aftercare.MessageRef, run aftercare.Run) error {
	r := &attempt{w: w, ref: ref, run: run, start: w.now(),
		log: w.log.With("booking", ref.BookingID, "version", ref.Version, "step", ref.Step, "channel", ref.Channel, "attempt", run.Attempt)}
	rec, err := w.store.Get(ctx, ref.BookingID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return r.finish(ctx, "", verdict{outcome: aftercare.OutcomeDropped, reason: reasonGone})
	}
	if err != nil {
		return err
	}
	msg, _ := rec.Message(ref.Step, ref.Channel)
	v := decide(rec, ref, w.policy(rec.Booking.Treatment, ref.Step), w.clinic.QuietFor(ref.Channel), w.now())
	if !v.send() {
		return r.finish(ctx, msg.Status, v)
	}
	if err := sleepUntil(ctx, v.at, w.now); err != nil {
		return err
	}
	// Pace before claiming: a worker that dies while waiting leaves the
	// message scheduled, not in doubt.
	if err := w.pace(ctx, ref.Channel); err != nil {
		return r.finish(ctx, "", verdict{outcome: aftercare.OutcomeRateLimited, reason: errorText(err), err: err})
	}
	phone := "" // the claim of an SMS also reads the opt-out list
	if ref.Channel == aftercare.SMS {
		phone = rec.Booking.Patient.Phone
	}
	prev, optedOut, err := w.store.Claim(ctx, ref, phone)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return r.finish(ctx, "", verdict{outcome: aftercare.OutcomeDropped, reason: reasonGone})
	}
	if err != nil {
		return err
	}
	if v := claimed(prev, optedOut); !v.send() {
		return r.finish(ctx, aftercare.StatusSending, v)
	}
	v = budget(r.send(ctx, rec, msg), run.Last, msg.Deadline, w.now())
	return r.finish(ctx, aftercare.StatusSending, v)
}

// attempt is one run of a send task.
type attempt struct {
	w     *Worker
	ref   aftercare.MessageRef
	run   aftercare.Run
	start time.Time
	log   *slog.Logger
	// Known once the provider was called.
	providerTime, late time.Duration
}

// send renders the claimed message and hands it to its channel's sender.
func (r *attempt) send(ctx context.Context, rec *aftercare.Record, msg aftercare.Message) verdict {
	out, err := r.w.render.Render(&rec.Booking, r.ref.Step, r.ref.Channel, firstSMS(rec, r.ref))
	if err != nil {
		return verdict{outcome: aftercare.OutcomeFailed, reason: err.Error()}
	}
	out.ID = r.ref.TaskID()
	if out.Locale != rec.Booking.Patient.Locale {
		r.log.Warn("no template in the patient's language; sent in "+out.Locale, "locale", rec.Booking.Patient.Locale)
	}
	start := r.w.now()
	r.late = start.Sub(msg.SendAt)
	providerID, err := r.w.senders[r.ref.Channel].Send(ctx, out)
	r.providerTime = r.w.now().Sub(start)
	if errors.Is(err, aftercare.ErrUnsubscribed) {
		if oerr := r.w.store.SetOptOut(context.WithoutCancel(ctx), out.To, true, r.w.now()); oerr != nil {
			r.log.Error("could not record the opt-out the provider reported", "error", oerr)
		}
	}
	v := sent(providerID, err)
	v.digest = aftercare.Digest(out)
	return v
}

// finish carries out verdict v on a message the run found in status from:
// it records the status the outcome leaves (if any) with the run's history
// entry, logs and counts the outcome, and returns what asynq should know.
// A message the run holds in sending is always recorded (see record).
func (r *attempt) finish(ctx context.Context, from aftercare.MessageStatus, v verdict) error {
	detail := v.reason // the history's and the log's: why, or the provider id
	if v.providerID != "" {
		detail = v.providerID
	}
	if to, ok := v.outcome.Status(); ok {
		c := r.ref.Change(from, to, v.reason)
		c.ProviderID, c.Digest = v.providerID, v.digest
		c.Attempt = aftercare.Attempt{At: r.w.now(), Step: r.ref.Step, Channel: r.ref.Channel, Number: r.run.Attempt, Outcome: v.outcome, Detail: detail}
		if from == aftercare.StatusSending {
			r.w.record(ctx, r.log, c)
		} else if _, err := r.w.store.Transition(ctx, c); err != nil {
			return err
		}
		r.followUp(ctx, to, v)
	}
	attrs := []any{"outcome", v.outcome, "detail", detail, "duration", r.w.now().Sub(r.start)}
	switch v.outcome {
	case aftercare.OutcomeSent:
		attrs = append(attrs, "late", r.late)
	case aftercare.OutcomeDeferred:
		attrs = append(attrs, "until", v.at)
	}
	r.log.Info("send attempt", attrs...)
	if r.w.metrics != nil {
		r.w.metrics.Attempt(r.ref.Step, r.ref.Channel, v.outcome, r.providerTime, r.late)
	}
	switch v.outcome {
	case aftercare.OutcomeDeferred:
		return &aftercare.Deferred{Until: v.at}
	case aftercare.OutcomeFailed, aftercare.OutcomeUnknown:
		return fmt.Errorf("%w: %s", aftercare.ErrFinal, v.reason)
	}
	return v.err
}

// followUp tells the Followups how the message ended: sent, or without
// surely reaching the patient. What fails here is logged: the message's own
// record is written, and a later change or receipt can still follow up.
func (r *attempt) followUp(ctx context.Context, to aftercare.MessageStatus, v verdict) {
	if r.w.followups == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	switch to {
	case aftercare.StatusSent:
		err = r.w.followups.Sent(ctx, r.ref, v.providerID)
	case aftercare.StatusFailed, aftercare.StatusExpired, aftercare.StatusSuppressed, aftercare.StatusOutcomeUnknown:
		err = r.w.followups.Ended(ctx, r.ref, to, v.reason)
	}
	if err != nil {
		r.log.Error("could not follow up on the message", "status", to, "error", aftercare.Redact(err.Error()))
	}
}

// firstSMS reports whether ref is an SMS and no other SMS of the booking has
// gone out (or may have): the first one tells the patient how to opt out.
func firstSMS(rec *aftercare.Record, ref aftercare.MessageRef) bool {
	if ref.Channel != aftercare.SMS {
		return false
	}
	for _, m := range rec.Messages {
		if m.Channel == aftercare.SMS && m.Step != ref.Step && m.Status.Happened() {
			return false
		}
	}
	return true
}

// policy is the quiet-hour policy of a step; the cancellation notice, in no
// protocol, waits for the morning.
func (w *Worker) policy(treatment, step string) aftercare.QuietPolicy {
	if s, ok := w.protocols[treatment].Step(step); ok {
		return s.Quiet
	}
	return aftercare.QuietDefer
}

// pace waits for the channel's next slot under the rate limit, if any.
func (w *Worker) pace(ctx context.Context, ch aftercare.Channel) error {
	if w.limiter == nil {
		return nil
	}
	wait, err := w.limiter.Reserve(ctx, ch)
	if err != nil {
		return err
	}
	return sleepUntil(ctx, w.now().Add(wait), w.now)
}

// recordFor is how long record keeps trying: long enough to ride out a
// Redis restart or failover.
const recordFor = 30 * time.Second

// record makes a change to a message the run holds in sending, with the
// attempt for the history, even if ctx was cancelled (a shutdown in the
// middle of a send), retrying with backoff for up to recordFor: losing the
// record of a send is how duplicates happen. If it never succeeds the
// message stays sending, which a later run records as outcome unknown.
func (w *Worker) record(ctx context.Context, log *slog.Logger, c aftercare.Change) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordFor)
	defer cancel()
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err := w.store.Transition(ctx, c)
		if err == nil {
			return
		}
		if aftercare.ErrorCode(err) == aftercare.EINVALID { // a change no retry makes right
			log.Error("could not record message status", "status", c.To.Status, "error", err)
			return
		}
		if sleepUntil(ctx, w.now().Add(wait), w.now) != nil {
			log.Error("could not record message status", "status", c.To.Status, "error", err)
			return
		}
	}
}

// sleepUntil waits until t (by now) or ctx ends.
func sleepUntil(ctx context.Context, t time.Time, now func() time.Time) error {
	d := t.Sub(now())
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
