// Package worker sends planned messages: it is the asynq handler that turns
// a send task back into a rendered message, claims it, hands it to the
// channel's Sender and records what happened.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

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
	// Transition moves a message from one status to another, reporting
	// false if it was not in status from, and adds the attempt to the
	// booking's audit trail either way, in one round trip. A sent SMS's
	// provider id is linked to the message, for delivery receipts.
	Transition(ctx context.Context, ref aftercare.MessageRef, from, to aftercare.MessageStatus, providerID, errText string, a aftercare.Attempt) (bool, error)
	// SetOptOut records that a number replied STOP (out) or opted back in.
	SetOptOut(ctx context.Context, phone string, out bool, at time.Time) error
}

// Sender delivers a rendered message and returns the provider's id for it.
// Errors should be *aftercare.SendError; any other error counts as
// transient.
type Sender interface {
	Send(ctx context.Context, msg aftercare.Outgoing) (providerID string, err error)
}

// Limiter paces sends on a channel; Wait returns an ErrRateLimited
// SendError when the caller should come back later.
type Limiter interface {
	Wait(ctx context.Context, ch aftercare.Channel) error
}

// Metrics records the outcome of each run of a send task.
type Metrics interface {
	Attempt(step string, ch aftercare.Channel, outcome string, provider, late time.Duration)
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
	// Quiet are the clinic's quiet hours, read on the patient's clock.
	Quiet aftercare.QuietHours
	// Limiter, if set, paces the sends of each channel.
	Limiter Limiter
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
	quiet     aftercare.QuietHours
	limiter   Limiter
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
		quiet:     cfg.Quiet,
		limiter:   cfg.Limiter,
		metrics:   cfg.Metrics,
		log:       cfg.Logger,
		now:       cfg.Now,
	}
}

// Mux returns an asynq handler that routes both send task types to w.
func (w *Worker) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Handle(aftercare.TypeSendSMS, w)
	mux.Handle(aftercare.TypeSendEmail, w)
	return mux
}

// Outcomes of one task, as logged.
const (
	outcomeSent        = "sent"
	outcomeFailed      = "failed"
	outcomeRetry       = "retry"
	outcomeExpired     = "expired"
	outcomeDropped     = "dropped"
	outcomeUncertain   = "uncertain"
	outcomeDeferred    = "deferred"
	outcomeSkipped     = "skipped"
	outcomeSuppressed  = "suppressed"
	outcomeRateLimited = "rate_limited"
)

// ProcessTask sends the message the task refers to, at most once:
//
//  1. load the booking; drop the task if the record is gone, the booking was
//     cancelled or rescheduled (another version), or the message is final;
//     a message still sending from a run that died may have gone out, so it
//     is recorded failed with "outcome unknown" and never sent again;
//  2. past the send-by deadline, record expired and stop;
//  3. wait out the last moments if asynq surfaced the task early (it keeps
//     due times in whole seconds), then apply the step's quiet-hour policy
//     again: a retry can drift into quiet hours;
//  4. wait for the channel's rate limit, then claim the message
//     (scheduled -> sending) in one Redis round trip that
//     re-checks the version, so a cancel racing this task wins or loses
//     cleanly, and for an SMS reads the opt-out list: a text to a number
//     that replied STOP is recorded as suppressed instead;
//  5. render, send, and record sent with the provider id, failed (permanent
//     errors, not retried; a provider's "unsubscribed" also opts the number
//     out) or scheduled again with the error (retried).
func (w *Worker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	ref, err := aftercare.ParseMessageRef(t.Payload())
	if err != nil || ref.TaskType() != t.Type() {
		return fmt.Errorf("%w: task %s: bad payload: %v", asynq.SkipRetry, t.Type(), err)
	}
	start := w.now()
	attempt := 1
	if n, ok := asynq.GetRetryCount(ctx); ok {
		attempt = n + 1
	}
	log := w.log.With("booking", ref.BookingID, "version", ref.Version, "step", ref.Step, "channel", ref.Channel, "attempt", attempt)
	// done logs and counts the outcome of this run. detail is the provider
	// id of a send, or the reason or error otherwise.
	var providerTime, late time.Duration // known once a send was made
	done := func(outcome, detail string, attrs ...any) {
		log.Info("send attempt", append([]any{"outcome", outcome, "detail", detail, "duration", w.now().Sub(start)}, attrs...)...)
		if w.metrics != nil {
			w.metrics.Attempt(ref.Step, ref.Channel, outcome, providerTime, late)
		}
	}
	// entry is this run's line in the booking's history, written with the
	// status change it made: a run that changed nothing (dropped, deferred,
	// rate limited) leaves none.
	entry := func(outcome, detail string) aftercare.Attempt {
		return aftercare.Attempt{At: w.now(), Step: ref.Step, Channel: ref.Channel, Number: attempt, Outcome: outcome, Detail: detail}
	}
	// uncertain records a message that may have gone out (a worker died
	// while sending it, or the provider got it and never answered) as
	// failed: a message is never sent twice, so the clinic follows up.
	uncertain := func(why string) {
		w.record(ctx, log, ref, aftercare.StatusSending, aftercare.StatusFailed, "",
			"outcome unknown: "+why+"; not sent again to avoid a duplicate", entry(outcomeUncertain, why))
		done(outcomeUncertain, why)
	}

	rec, err := w.store.Get(ctx, ref.BookingID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		done(outcomeDropped, "booking record gone")
		return nil
	}
	if err != nil {
		return err
	}
	msg, ok := rec.Message(ref.Step, ref.Channel)
	switch {
	case rec.Version != ref.Version:
		done(outcomeDropped, "booking changed")
		return nil
	case ok && msg.Status == aftercare.StatusSending:
		// An earlier run stopped between claiming and recording (its worker
		// died): the message may have gone out. Whatever else has happened
		// since (a cancel, the deadline, a STOP), that is what is recorded.
		uncertain(diedWhileSending)
		return nil
	case rec.Status == aftercare.BookingCancelled && !ref.SurvivesCancel():
		done(outcomeDropped, "booking cancelled")
		return nil
	case !ok || msg.Status.Final():
		done(outcomeDropped, "message already "+string(msg.Status))
		return nil
	}

	if !w.now().Before(msg.Deadline) {
		if _, err := w.store.Transition(ctx, ref, msg.Status, aftercare.StatusExpired, "", "send-by deadline passed",
			entry(outcomeExpired, "send-by deadline passed")); err != nil {
			return err
		}
		done(outcomeExpired, "send-by deadline passed", "deadline", msg.Deadline)
		return nil
	}
	if err := sleepUntil(ctx, msg.SendAt, w.now); err != nil {
		return err
	}
	if until, inside := w.quiet.Until(w.now(), rec.Booking.Location()); inside {
		switch w.quietPolicy(rec.Booking.Treatment, ref.Step) {
		case aftercare.QuietIgnore:
		case aftercare.QuietSkip:
			if _, err := w.store.Transition(ctx, ref, msg.Status, aftercare.StatusSkipped, "", "fell in quiet hours; this step is skipped then",
				entry(outcomeSkipped, "fell in quiet hours")); err != nil {
				return err
			}
			done(outcomeSkipped, "fell in quiet hours")
			return nil
		default:
			if !until.Before(msg.Deadline) {
				if _, err := w.store.Transition(ctx, ref, msg.Status, aftercare.StatusExpired, "", "quiet hours end after its send-by deadline",
					entry(outcomeExpired, "quiet hours end after its send-by deadline")); err != nil {
					return err
				}
				done(outcomeExpired, "quiet hours end after its send-by deadline")
				return nil
			}
			done(outcomeDeferred, "quiet hours", "until", until)
			return &Deferred{Until: until}
		}
	}

	// Pace before claiming: a worker that dies while waiting leaves the
	// message scheduled, not in doubt.
	if w.limiter != nil {
		if err := w.limiter.Wait(ctx, ref.Channel); err != nil {
			done(outcomeRateLimited, errorText(err))
			return err
		}
	}

	// The claim of an SMS also reads the opt-out list.
	phone := ""
	if ref.Channel == aftercare.SMS {
		phone = rec.Booking.Patient.Phone
	}
	prev, optedOut, err := w.store.Claim(ctx, ref, phone)
	switch {
	case aftercare.ErrorCode(err) == aftercare.ENOTFOUND:
		done(outcomeDropped, "booking record gone")
		return nil
	case err != nil:
		return err
	case optedOut && prev == aftercare.StatusScheduled:
		// Claimed, but the number has said STOP: no text goes, and none is
		// retried.
		w.record(ctx, log, ref, aftercare.StatusSending, aftercare.StatusSuppressed, "", "the patient replied STOP",
			entry(outcomeSuppressed, "the patient replied STOP"))
		done(outcomeSuppressed, "the patient replied STOP")
		return nil
	case prev == aftercare.StatusSending:
		// Claimed by an earlier run after this one read the record.
		uncertain(diedWhileSending)
		return nil
	case prev != aftercare.StatusScheduled:
		done(outcomeDropped, "message "+string(prev))
		return nil
	}

	out, err := w.render.Render(&rec.Booking, ref.Step, ref.Channel, firstSMS(rec, ref))
	if err != nil {
		w.record(ctx, log, ref, aftercare.StatusSending, aftercare.StatusFailed, "", err.Error(), entry(outcomeFailed, err.Error()))
		done(outcomeFailed, err.Error())
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	out.ID = ref.TaskID()
	if out.Locale != rec.Booking.Patient.Locale {
		log.Warn("no template in the patient's language; sent in "+out.Locale, "locale", rec.Booking.Patient.Locale)
	}

	sender := w.senders[ref.Channel]
	sendStart := w.now()
	late = sendStart.Sub(msg.SendAt)
	providerID, err := sender.Send(ctx, out)
	providerTime = w.now().Sub(sendStart)
	if err == nil {
		w.record(ctx, log, ref, aftercare.StatusSending, aftercare.StatusSent, providerID, "", entry(outcomeSent, providerID))
		done(outcomeSent, providerID, "late", late)
		return nil
	}

	reason := errorText(err)
	if errors.Is(err, aftercare.ErrUncertain) {
		// The provider got the request and no answer came back: like a
		// worker that died mid-send, the message may be out, so it is not
		// sent again.
		uncertain(reason)
		return fmt.Errorf("%w: %s", asynq.SkipRetry, reason)
	}
	if errors.Is(err, aftercare.ErrPermanent) {
		if errors.Is(err, aftercare.ErrUnsubscribed) {
			if oerr := w.store.SetOptOut(context.WithoutCancel(ctx), out.To, true, w.now()); oerr != nil {
				log.Error("could not record the opt-out the provider reported", "error", oerr)
			}
		}
		w.record(ctx, log, ref, aftercare.StatusSending, aftercare.StatusFailed, "", reason, entry(outcomeFailed, reason))
		done(outcomeFailed, reason)
		return fmt.Errorf("%w: %s", asynq.SkipRetry, reason)
	}
	w.record(ctx, log, ref, aftercare.StatusSending, aftercare.StatusScheduled, "", reason, entry(outcomeRetry, reason))
	done(outcomeRetry, reason)
	return err
}

// firstSMS reports whether ref is an SMS and no other SMS of the booking has
// gone out: the first one tells the patient how to opt out.
func firstSMS(rec *aftercare.Record, ref aftercare.MessageRef) bool {
	if ref.Channel != aftercare.SMS {
		return false
	}
	for _, m := range rec.Messages {
		if m.Channel == aftercare.SMS && m.Step != ref.Step &&
			(m.Status == aftercare.StatusSending || m.Status == aftercare.StatusSent || m.Status == aftercare.StatusDelivered) {
			return false
		}
	}
	return true
}

// quietPolicy is the quiet-hour policy of a step; the cancellation notice,
// in no protocol, waits for the morning.
func (w *Worker) quietPolicy(treatment, step string) aftercare.QuietPolicy {
	for _, s := range w.protocols[treatment].Steps {
		if s.Name == step {
			return s.Quiet
		}
	}
	return aftercare.QuietDefer
}

// Deferred is returned to asynq for a message that fell due inside quiet
// hours: it is tried again when they end, without counting as a failure.
type Deferred struct{ Until time.Time }

func (d *Deferred) Error() string {
	return "quiet hours: deferred until " + d.Until.Format(time.RFC3339)
}

// recordFor is how long record keeps trying: long enough to ride out a
// Redis restart or failover.
const recordFor = 30 * time.Second

// diedWhileSending is why a message found sending, claimed by a run that
// stopped before recording, is failed.
const diedWhileSending = "an earlier attempt stopped while sending"

// record writes a status change, with the attempt for the history, even if
// ctx was cancelled (a shutdown in the middle of a send), retrying with
// backoff for up to recordFor: losing the record of a send is how
// duplicates happen. If it never succeeds the message stays sending, which
// a later run treats as outcome unknown.
func (w *Worker) record(ctx context.Context, log *slog.Logger, ref aftercare.MessageRef, from, to aftercare.MessageStatus, providerID, errText string, a aftercare.Attempt) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordFor)
	defer cancel()
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err := w.store.Transition(ctx, ref, from, to, providerID, errText, a)
		if err == nil {
			return
		}
		if sleepUntil(ctx, w.now().Add(wait), w.now) != nil {
			log.Error("could not record message status", "status", to, "error", err)
			return
		}
	}
}

// errorText is what is stored on the message: the provider code and cause.
func errorText(err error) string {
	if se, ok := errors.AsType[*aftercare.SendError](err); ok {
		return se.Code + ": " + se.Err.Error()
	}
	return aftercare.Redact(err.Error())
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

// IsFailure tells asynq which errors count against a task's retries: being
// rate limited or deferred by quiet hours does not.
func IsFailure(err error) bool {
	_, deferred := errors.AsType[*Deferred](err)
	return !deferred && !errors.Is(err, aftercare.ErrRateLimited)
}

// RetryDelay is the asynq retry delay: exponential from 5 seconds, capped at
// 10 minutes, with ±20% jitter so retries of many messages spread out.
// Rate-limited sends come back after about a second, deferred ones when
// quiet hours end. No retry is put after the message's deadline: the last
// one lands just before it (and a run past it records expired).
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if d, ok := errors.AsType[*Deferred](err); ok {
		return max(time.Until(d.Until), time.Second)
	}
	d := 10 * time.Minute
	switch {
	case errors.Is(err, aftercare.ErrRateLimited):
		d = time.Second
	case n < 7:
		d = 5 * time.Second << n
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if t != nil {
		if ref, perr := aftercare.ParseMessageRef(t.Payload()); perr == nil && ref.Deadline > 0 {
			left := time.Until(time.Unix(ref.Deadline, 0))
			d = min(d, max(left-2*time.Second, time.Second))
		}
	}
	return d
}

// ServerConfig is the asynq server configuration for a worker process.
// concurrency is the number of sends in flight at once.
func ServerConfig(concurrency int, shutdownTimeout time.Duration, logger *slog.Logger) asynq.Config {
	return asynq.Config{
		Concurrency: concurrency,
		Queues:      map[string]int{aftercare.QueueSMS: 2, aftercare.QueueEmail: 1},
		// asynq moves due tasks to their queue on this interval (and keeps
		// due times in whole seconds; the worker waits out the rest). At
		// 100 ms, 10,000 texts due over a minute went out with p99 423 ms
		// late and none early (BENCHMARKS.md).
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		TaskCheckInterval:        200 * time.Millisecond,
		RetryDelayFunc:           RetryDelay,
		IsFailure:                IsFailure,
		ShutdownTimeout:          shutdownTimeout,
		Logger:                   asynqLogger{logger.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
	}
}

// asynqLogger adapts slog to asynq's logger interface.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
