// Package worker sends planned messages: it turns the reference a send task
// carries back into a rendered message, decides whether it may go, claims
// it, hands it to the channel's Sender and records what happened.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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
	Claim(ctx context.Context, ref aftercare.MessageRef, phone string, now time.Time) (prev aftercare.MessageStatus, optedOut bool, err error)
	// Reclaim takes over a message left sending under the claim made at
	// claimedAt, for the one run that resolves it; false if another run
	// took it first.
	Reclaim(ctx context.Context, ref aftercare.MessageRef, claimedAt, now time.Time) (bool, error)
	// Transition makes a change (see aftercare.Change), reporting false if
	// the message was no longer in status c.From, and adds c.Event to the
	// booking's audit trail either way, in one round trip. A sent SMS's
	// provider id is linked to the message, for delivery receipts, and
	// those that came before are returned (early).
	Transition(ctx context.Context, c aftercare.Change) (changed bool, early []aftercare.Receipt, err error)
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

// Finder asks the SMS provider whether it took a text: the provider id of
// the text to to with one of bodies, created since since, or "" if it has
// none. The twilio package implements it.
type Finder interface {
	Find(ctx context.Context, to string, bodies []string, since time.Time) (providerID string, err error)
}

// Followups is what comes after a message ends. The scheduler implements
// it.
type Followups interface {
	// Ended is told that message ref ended in status st, for reason, without
	// surely reaching the patient: it plans the step's fallback if it has
	// one, and tells the clinic when the patient may miss what they need.
	Ended(ctx context.Context, ref aftercare.MessageRef, st aftercare.MessageStatus, reason string) error
	// Sent is told that the provider took message ref as providerID, with
	// the delivery receipts that came before the record, to apply now.
	Sent(ctx context.Context, ref aftercare.MessageRef, providerID string, early []aftercare.Receipt) error
}

// Renderer renders one step of a booking for one channel.
type Renderer interface {
	// Render renders a step; first marks the booking's first SMS.
	Render(rec *aftercare.Record, step string, ch aftercare.Channel, first bool) (aftercare.Outgoing, error)
	// SMSTexts are every text a step's SMS may have gone out as.
	SMSTexts(rec *aftercare.Record, step string) ([]string, error)
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
	// Finder, if set, is asked about a text whose outcome is in doubt, so
	// that it ends sent, or is sent after all, rather than unknown.
	Finder Finder
	// Metrics, if set, counts each run's outcome, and for a send the
	// provider call's duration and how late it went out.
	Metrics Metrics
	// RecordFor is how long a run keeps trying to record what happened to a
	// message it holds in sending, riding out a Redis restart or failover.
	// Default 30 s.
	RecordFor time.Duration
	Logger    *slog.Logger
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
	finder    Finder
	metrics   Metrics
	recordFor time.Duration
	log       *slog.Logger
	now       func() time.Time
	// held keeps, by task id, the verdict of a run that could not record it
	// (Redis gone for longer than record tries): the next run of the task
	// records it (a text sent, with its provider id) rather than finding
	// the message in doubt.
	held sync.Map
}

// New returns a Worker.
func New(cfg Config) *Worker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RecordFor <= 0 {
		cfg.RecordFor = 30 * time.Second
	}
	return &Worker{
		store:     cfg.Store,
		render:    cfg.Renderer,
		senders:   map[aftercare.Channel]Sender{aftercare.SMS: cfg.SMS, aftercare.Email: cfg.Email},
		protocols: cfg.Protocols,
		clinic:    cfg.Clinic,
		limiter:   cfg.Limiter,
		followups: cfg.Followups,
		finder:    cfg.Finder,
		metrics:   cfg.Metrics,
		recordFor: cfg.RecordFor,
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
		r.log.Error("the booking record cannot be read; the task is tried again", "error", aftercare.Redact(err.Error()))
		return err
	}
	msg, _ := rec.Message(ref.Step, ref.Channel)
	if v, ok := w.held.LoadAndDelete(ref.TaskID()); ok && msg.Status == aftercare.StatusSending {
		r.log.Info("recording what an earlier run could not")
		return r.finish(ctx, aftercare.StatusSending, v.(verdict))
	}
	ask := w.finder != nil && ref.Channel == aftercare.SMS
	v := decide(rec, ref, w.policy(rec.Booking.Treatment, ref.Step), w.clinic.QuietFor(ref.Channel), w.now(), ask)
	if v.outcome == aftercare.OutcomeInDoubt {
		return r.finish(ctx, msg.Status, budget(r.resolve(ctx, rec, msg), run.Last, msg.Deadline, w.now()))
	}
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
	prev, optedOut, err := w.store.Claim(ctx, ref, phone, w.now())
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return r.finish(ctx, "", verdict{outcome: aftercare.OutcomeDropped, reason: reasonGone})
	}
	if err != nil {
		return err
	}
	if v := claimed(prev, optedOut, ask); v.outcome == aftercare.OutcomeInDoubt {
		v.at = w.now().Add(askAfter) // another run has it: ask about it later
		return r.finish(ctx, aftercare.StatusSending, v)
	} else if !v.send() {
		return r.finish(ctx, aftercare.StatusSending, v)
	}
	v = budget(r.send(ctx, rec, msg, ask), run.Last, msg.Deadline, w.now())
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

// send renders the claimed message and hands it to its channel's sender;
// with ask, a text the provider may have taken without answering stays in
// doubt, for a later run to ask the provider about (see resolve).
func (r *attempt) send(ctx context.Context, rec *aftercare.Record, msg aftercare.Message, ask bool) verdict {
	out, err := r.w.render.Render(rec, r.ref.Step, r.ref.Channel, firstSMS(rec, r.ref))
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
	v := sent(providerID, err, ask)
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
		detail = strings.TrimSuffix(v.providerID+" ("+v.reason+")", " ()")
	}
	if to, ok := v.outcome.Status(); ok || (v.outcome == aftercare.OutcomeInDoubt && from == aftercare.StatusSending) {
		reason := v.reason
		if to == aftercare.StatusSent {
			reason = "" // a message sent has no error
		}
		c := r.ref.Change(from, to, reason) // in doubt: no change, but a line in the history
		c.ProviderID, c.Digest = v.providerID, v.digest
		c.Event = aftercare.Event{At: r.w.now(), Kind: aftercare.EventSend, Step: r.ref.Step, Channel: r.ref.Channel, Number: r.run.Attempt,
			Outcome: v.outcome, Detail: detail, Asked: v.asked}
		var early []aftercare.Receipt
		if from == aftercare.StatusSending {
			var err error
			if early, err = r.w.record(ctx, c); err != nil {
				return r.hold(v, err)
			}
		} else if _, _, err := r.w.store.Transition(ctx, c); err != nil {
			return err
		}
		r.followUp(ctx, to, v, early)
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
	switch {
	case v.outcome == aftercare.OutcomeDeferred, v.outcome == aftercare.OutcomeInDoubt && !v.at.IsZero():
		return &aftercare.Deferred{Until: v.at}
	case v.outcome == aftercare.OutcomeFailed, v.outcome == aftercare.OutcomeUnknown:
		return fmt.Errorf("%w: %s", aftercare.ErrFinal, v.reason)
	case v.err != nil:
		return redacted{v.err} // asynq keeps the text on the task, where the dashboard shows it
	}
	return nil
}

// redacted is an error whose text went through aftercare.Redact: a
// provider's words can quote the patient's number or address.
type redacted struct{ err error }

func (e redacted) Error() string { return aftercare.Redact(e.err.Error()) }
func (e redacted) Unwrap() error { return e.err }

// hold keeps verdict v, which could not be recorded, for the task's next
// run in this process, and asks for that run: the message stays sending,
// and is counted once, when it is recorded. A run in another process finds
// it in doubt, and for a text asks the provider, which lists it.
func (r *attempt) hold(v verdict, err error) error {
	if v.outcome != aftercare.OutcomeInDoubt {
		r.w.held.Store(r.ref.TaskID(), v)
	}
	r.log.Error("could not record the outcome; the next run records it", "outcome", v.outcome, "error", err)
	if r.run.Last {
		r.log.Error("no run is left to record the outcome: the message stays sending until a person looks", "outcome", v.outcome)
	}
	return fmt.Errorf("record %s: %w", v.outcome, err)
}

// askAfter is how long after a text's claim the provider is asked about
// it: long enough that no request of that claim can still reach the
// provider (the Twilio sender gives up after 10 s), so what the provider
// does not list, it never had.
const askAfter = 30 * time.Second

// resolve settles a text in doubt (left sending by a run that stopped, or
// that got no answer) by asking the provider, once askAfter has passed
// since its claim: if the provider has it, it is recorded sent with its id;
// if not, it never left, and this run sends it (having taken the claim over,
// so that one run alone does), or expires it past its deadline. A provider
// that cannot be asked is asked again by a later run.
func (r *attempt) resolve(ctx context.Context, rec *aftercare.Record, msg aftercare.Message) verdict {
	now := r.w.now()
	if ready := msg.ClaimedAt.Add(askAfter); now.Before(ready) {
		return verdict{outcome: aftercare.OutcomeInDoubt, reason: "asking the provider once no request of the claim can still reach it", at: ready}
	}
	bodies, err := r.w.render.SMSTexts(rec, r.ref.Step)
	if err != nil {
		return verdict{outcome: aftercare.OutcomeUnknown, reason: err.Error() + reasonNoAnswer}
	}
	sid, err := r.w.finder.Find(ctx, rec.Booking.Patient.Phone, bodies, msg.ClaimedAt.Add(-time.Minute))
	switch {
	case err != nil:
		return verdict{outcome: aftercare.OutcomeInDoubt, reason: "could not ask the provider: " + errorText(err), err: err}
	case sid != "":
		return verdict{outcome: aftercare.OutcomeSent, providerID: sid, reason: "found at the provider", asked: true}
	}
	ok, err := r.w.store.Reclaim(ctx, r.ref, msg.ClaimedAt, now)
	switch {
	case err != nil:
		return verdict{outcome: aftercare.OutcomeInDoubt, reason: "could not take the message over: " + err.Error(), err: err}
	case !ok:
		return verdict{outcome: aftercare.OutcomeDropped, reason: "another run resolves it"}
	case !now.Before(msg.Deadline):
		return verdict{outcome: aftercare.OutcomeExpired, reason: "the provider never had it, and its send-by deadline has passed", asked: true}
	}
	r.log.Info("the provider never had the text in doubt: sending it now")
	v := r.send(ctx, rec, msg, true)
	if v.outcome == aftercare.OutcomeSent {
		v.reason = "the provider never had it: sent now"
	}
	v.asked = true
	return v
}

// followUp tells the Followups how the message ended: sent (with the
// receipts that came early), or without surely reaching the patient. What
// fails here is logged: the message's own record is written, and a later
// change or receipt can still follow up.
func (r *attempt) followUp(ctx context.Context, to aftercare.MessageStatus, v verdict, early []aftercare.Receipt) {
	if r.w.followups == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	switch to {
	case aftercare.StatusSent:
		err = r.w.followups.Sent(ctx, r.ref, v.providerID, early)
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

// record makes a change to a message the run holds in sending, with the
// attempt for the history, even if ctx was cancelled (a shutdown in the
// middle of a send), retrying with backoff for up to RecordFor: losing the
// record of a send is how duplicates happen. A change no retry makes right
// is logged and counts as done. It returns the receipts that came early
// for a text recorded sent.
func (w *Worker) record(ctx context.Context, c aftercare.Change) ([]aftercare.Receipt, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.recordFor)
	defer cancel()
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, early, err := w.store.Transition(ctx, c)
		if err == nil {
			return early, nil
		}
		if aftercare.ErrorCode(err) == aftercare.EINVALID {
			w.log.Error("could not record message status", "booking", c.Ref.BookingID, "status", c.To.Status, "error", err)
			return nil, nil
		}
		if sleepUntil(ctx, w.now().Add(wait), w.now) != nil {
			return nil, err
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
