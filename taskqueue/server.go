package taskqueue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// Handler sends the message a task refers to, in run (which says whether
// it is the task's last). Its error says what comes next (see
// aftercare.ErrFinal).
type Handler interface {
	Handle(ctx context.Context, ref aftercare.MessageRef, run aftercare.Run) error
}

// AlertHandler runs an alert task, likewise.
type AlertHandler interface {
	Handle(ctx context.Context, ref aftercare.AlertRef, run aftercare.Run) error
}

// EventHandler runs a webhook task likewise.
type EventHandler interface {
	Handle(ctx context.Context, d aftercare.Delivery, run aftercare.Run) error
}

// Handlers are what a Server runs: the patients' messages, and the alerts
// to the clinic's staff.
type Handlers struct {
	Sends  Handler
	Alerts AlertHandler
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Concurrency is the number of routine sends (or deliveries) in flight
	// at once.
	Concurrency int
	// UrgentConcurrency is the number of clinical sends and staff alerts in
	// flight at once, on workers of their own. Default half of Concurrency,
	// at least 4.
	UrgentConcurrency int
	// ShutdownTimeout is how long sends in flight may take to finish when
	// the server shuts down.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Server runs tasks: one asynq server for each set of queues that must
// not wait for another's.
type Server struct{ srvs []*asynq.Server }

// NewServer returns a Server of send and alert tasks on rdb, which it
// shares and does not close. It runs two asynq servers, so that no number
// of routine messages can hold up an urgent one:
//
//   - urgent: staff alerts, then clinical messages (strict priority), on
//     cfg.UrgentConcurrency workers of their own;
//   - routine: texts and emails, two picks of the text queue to one of the
//     email queue (weighted, so neither starves), on cfg.Concurrency workers.
//
// Within a queue, messages go oldest due first. Both servers share each
// channel's rate limit (the worker's Limiter); a clinical text waits at
// most for the slots routine workers have already taken, a fraction of a
// second at the usual rates.
func NewServer(rdb redis.UniversalClient, cfg ServerConfig) *Server {
	// asynq moves due tasks to their queue on this interval (and keeps due
	// times in whole seconds; the worker waits out the rest). At 100 ms,
	// 10,000 texts due over a minute went out with p99 423 ms late and none
	// early (BENCHMARKS.md).
	const forward, poll = 100 * time.Millisecond, 200 * time.Millisecond
	urgent := cfg
	urgent.Concurrency = cmp.Or(cfg.UrgentConcurrency, max(cfg.Concurrency/2, 4))
	return &Server{[]*asynq.Server{
		newServer(rdb, urgent, asynq.Config{
			Queues:                   map[string]int{aftercare.QueueAlerts: 2, aftercare.QueueClinical: 1},
			StrictPriority:           true,
			DelayedTaskCheckInterval: forward,
			TaskCheckInterval:        poll,
		}),
		newServer(rdb, cfg, asynq.Config{
			Queues:                   map[string]int{aftercare.QueueSMS: 2, aftercare.QueueEmail: 1},
			DelayedTaskCheckInterval: forward,
			TaskCheckInterval:        poll,
		}),
	}}
}

// NewEventServer returns a Server of webhook deliveries on rdb: their own
// workers (cfg.Concurrency of them), so that a slow receiver never holds up
// a patient's text. Deliveries are not held to the minute, so asynq's own
// check intervals do.
func NewEventServer(rdb redis.UniversalClient, cfg ServerConfig) *Server {
	return &Server{[]*asynq.Server{newServer(rdb, cfg, asynq.Config{Queues: map[string]int{aftercare.QueueWebhooks: 1}})}}
}

// newServer completes base with what every server of aftercare's shares:
// the retry delays, what counts as a failure (a delivery parked for a
// disabled endpoint is not failing either), the shutdown and the logger.
func newServer(rdb redis.UniversalClient, cfg ServerConfig, base asynq.Config) *asynq.Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	base.Concurrency = cfg.Concurrency
	base.RetryDelayFunc, base.IsFailure = retryDelay, isFailure
	base.ShutdownTimeout = cfg.ShutdownTimeout
	base.Logger, base.LogLevel = logger{cfg.Logger.With("component", "asynq")}, asynq.WarnLevel
	return asynq.NewServerFromRedisClient(rdb, base)
}

// StartEvents starts delivering events with h, in the background.
func (s *Server) StartEvents(h EventHandler) error {
	mux := asynq.NewServeMux()
	mux.Handle(aftercare.TypeWebhook, adapter[aftercare.Delivery]{payload(aftercare.ParseDelivery), h.Handle})
	return s.start(mux)
}

// Start starts running tasks with h, in the background.
func (s *Server) Start(h Handlers) error {
	mux := asynq.NewServeMux()
	sends := sendAdapter(h.Sends)
	for typ := range sendChannels {
		mux.Handle(typ, sends)
	}
	if h.Alerts != nil {
		mux.Handle(aftercare.TypeAlert, adapter[aftercare.AlertRef]{payload(aftercare.ParseAlertRef), h.Alerts.Handle})
	}
	return s.start(mux)
}

// start starts every asynq server of s with mux; if one fails, those
// started are stopped again.
func (s *Server) start(mux *asynq.ServeMux) error {
	for i, srv := range s.srvs {
		if err := srv.Start(mux); err != nil {
			for _, started := range s.srvs[:i] {
				started.Shutdown()
			}
			return err
		}
	}
	return nil
}

// Shutdown stops taking tasks, lets the sends in flight finish within the
// shutdown timeout, and puts unfinished tasks back into Redis. The servers
// stop together, so the timeout is not spent twice.
func (s *Server) Shutdown() {
	var wg sync.WaitGroup
	for _, srv := range s.srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
}

// adapter turns an asynq task into a call of handle with what parse reads
// from it, and handle's final errors into asynq's SkipRetry. A task that
// cannot be read is never tried again.
type adapter[P any] struct {
	parse  func(t *asynq.Task) (P, error)
	handle func(ctx context.Context, p P, run aftercare.Run) error
}

func (a adapter[P]) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := a.parse(t)
	if err != nil {
		return fmt.Errorf("%w: task %s: %w", asynq.SkipRetry, t.Type(), err)
	}
	return final(a.handle(ctx, p, run(ctx)))
}

// payload reads a task by its payload alone.
func payload[P any](parse func([]byte) (P, error)) func(*asynq.Task) (P, error) {
	return func(t *asynq.Task) (P, error) { return parse(t.Payload()) }
}

// sendChannels are the channels of the send task types, this release's
// and the earlier ones'.
var sendChannels = map[string]aftercare.Channel{
	aftercare.TypeSendSMS: aftercare.SMS, aftercare.TypeSendSMSJSON: aftercare.SMS,
	aftercare.TypeSendEmail: aftercare.Email, aftercare.TypeSendEmailJSON: aftercare.Email,
}

// sendAdapter runs send tasks with h; a payload must be of the task's
// channel.
func sendAdapter(h Handler) adapter[aftercare.MessageRef] {
	return adapter[aftercare.MessageRef]{func(t *asynq.Task) (aftercare.MessageRef, error) {
		ref, err := aftercare.ParseMessageRef(t.Payload())
		if err == nil && ref.Channel != sendChannels[t.Type()] {
			err = fmt.Errorf("a %s payload in a %s task", ref.Channel, t.Type())
		}
		return ref, err
	}, h.Handle}
}

// run says which run of its task ctx is, and whether asynq will make
// another if this one fails.
func run(ctx context.Context) aftercare.Run {
	n, _ := asynq.GetRetryCount(ctx)
	limit, ok := asynq.GetMaxRetry(ctx)
	return aftercare.Run{Attempt: n + 1, Last: ok && n >= limit}
}

// final turns a handler's final errors into asynq's SkipRetry.
func final(err error) error {
	if errors.Is(err, aftercare.ErrFinal) {
		return fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	return err
}

// isFailure tells asynq which errors count against a task's retries: being
// rate limited or deferred by quiet hours does not.
func isFailure(err error) bool {
	_, deferred := errors.AsType[*aftercare.Deferred](err)
	return !deferred && !errors.Is(err, aftercare.ErrRateLimited)
}

// retryDelay is the asynq retry delay: exponential from 5 seconds, capped at
// 10 minutes, with ±20% jitter so retries of many messages spread out.
// Rate-limited sends come back after about a second, deferred ones when
// quiet hours end. No retry is put after the message's deadline: the last
// one lands just before it (and a run past it records expired).
func retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if d, ok := errors.AsType[*aftercare.Deferred](err); ok {
		return max(time.Until(d.Until), time.Second)
	}
	if t != nil && t.Type() == aftercare.TypeWebhook {
		return webhookDelay(n, err)
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

// webhookSchedule is the Standard Webhooks retry schedule: after the first
// run, again after 5 seconds, 5 minutes, 30 minutes, 2 hours, 5 hours, 10
// hours and 10 hours (27 hours and a half in all).
var webhookSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// webhookDelay is the delay before retry n+1 of a delivery: the schedule's,
// with ±10% jitter, or the receiver's Retry-After if that is later.
func webhookDelay(n int, err error) time.Duration {
	d := webhookSchedule[min(n, len(webhookSchedule)-1)]
	d = time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
	if ra, ok := errors.AsType[*aftercare.RetryAfter](err); ok {
		// Not sooner than the receiver asks, nor sooner than the schedule:
		// a short Retry-After must not spend the day's retries in seconds.
		d = max(d, time.Until(ra.At))
	}
	return d
}

// logger adapts slog to asynq's logger interface.
type logger struct{ l *slog.Logger }

func (a logger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a logger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a logger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a logger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a logger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
