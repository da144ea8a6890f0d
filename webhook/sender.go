package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aftercare/aftercare"
)

// Timeout bounds one delivery, from connecting to the end of the answer.
const Timeout = 15 * time.Second

// maxRetryAfter caps how long a receiver's Retry-After may hold a delivery.
const maxRetryAfter = 10 * time.Hour

// Endpoints keeps which endpoints a receiver has turned off; the
// redisstore package implements it.
type Endpoints interface {
	EndpointDisabled(ctx context.Context, name string) (bool, error)
	DisableEndpoint(ctx context.Context, name, reason string, at time.Time) error
}

// Metrics counts deliveries; the metrics package implements it.
type Metrics interface {
	// EventDelivery counts one run of a delivery to endpoint by result:
	// delivered, retrying, failed (its retries are spent), disabled or
	// dropped (the endpoint is no longer configured).
	EventDelivery(endpoint, result string)
}

// SenderConfig configures a Sender.
type SenderConfig struct {
	Endpoints []Endpoint
	State     Endpoints
	// Client makes the calls; the default has Timeout and follows no
	// redirect.
	Client  *http.Client
	Metrics Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// Sender delivers events: it runs the webhook tasks.
type Sender struct {
	cfg       SenderConfig
	endpoints map[string]Endpoint
	log       *slog.Logger
}

// NewSender returns a Sender.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: Timeout,
			// A redirect is an answer, not a success: the receiver's URL
			// is fixed in the configuration.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, endpoints: map[string]Endpoint{}, log: log.With("component", "events")}
	for _, e := range cfg.Endpoints {
		s.endpoints[e.Name] = e
	}
	return s
}

// Handle delivers d, in run. Only a 2xx answer delivers it; 410 Gone
// turns the endpoint off until an operator turns it on again, and its
// deliveries wait meanwhile, without using up their retries; 429 and 503 with Retry-After are tried again no sooner than it
// says; anything else is tried again on the task queue's schedule. The
// task's error says what comes next (see aftercare.ErrFinal).
func (s *Sender) Handle(ctx context.Context, d aftercare.Delivery, run aftercare.Run) error {
	e, ok := s.endpoints[d.Endpoint]
	if !ok {
		s.count(d.Endpoint, "dropped")
		s.log.Warn("event for an endpoint that is no longer configured: dropped", "endpoint", d.Endpoint, "event", d.EventID)
		return fmt.Errorf("%w: endpoint %s is not configured", aftercare.ErrFinal, d.Endpoint)
	}
	off, err := s.cfg.State.EndpointDisabled(ctx, e.Name)
	if err != nil {
		return err
	}
	if off {
		s.count(e.Name, "disabled")
		return s.park()
	}
	err = s.post(ctx, e, d)
	switch {
	case err == nil:
		s.count(e.Name, "delivered")
		return nil
	case errors.Is(err, errGone):
		if derr := s.cfg.State.DisableEndpoint(ctx, e.Name, err.Error(), s.cfg.Now()); derr != nil {
			return derr // tried again: the 410 comes again
		}
		s.count(e.Name, "disabled")
		s.log.Error("webhook endpoint answered 410 Gone: it is DISABLED; its events wait until an operator enables it (aftercare events enable)",
			"endpoint", e.Name, "event", d.EventID)
		return s.park()
	case run.Last:
		s.count(e.Name, "failed")
		s.log.Error("event not delivered and no retries left: kept in the archive for redelivery",
			"endpoint", e.Name, "event", d.EventID, "attempt", run.Attempt, "error", err)
		return fmt.Errorf("%w: %v", aftercare.ErrFinal, err)
	}
	s.count(e.Name, "retrying")
	s.log.Warn("event not delivered; trying again", "endpoint", e.Name, "event", d.EventID, "attempt", run.Attempt, "error", err)
	return err
}

var errGone = errors.New("the receiver answered 410 Gone")

// parkFor is how often a delivery to a disabled endpoint looks again.
const parkFor = 5 * time.Minute

// park holds a delivery to a disabled endpoint: it waits, without counting
// as a failure, until the endpoint is enabled (which runs it at once).
func (s *Sender) park() error {
	return &aftercare.Deferred{Until: s.cfg.Now().Add(parkFor), Reason: "the endpoint is disabled (it answered 410 Gone)"}
}

// post makes one signed call.
func (s *Sender) post(ctx context.Context, e Endpoint, d aftercare.Delivery) error {
	now := s.cfg.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(d.Body))
	if err != nil {
		return fmt.Errorf("%w: endpoint %s: %v", aftercare.ErrFinal, e.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "aftercare-webhooks/1")
	req.Header.Set("webhook-id", d.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(e.Secrets, d.EventID, now, d.Body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", e.Name, unwrapURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is kept
	_ = resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusGone:
		return errGone
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		err := fmt.Errorf("endpoint %s answered %s", e.Name, resp.Status)
		if wait, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
			return &aftercare.RetryAfter{At: now.Add(wait), Err: err}
		}
		return err
	default:
		return fmt.Errorf("endpoint %s answered %s", e.Name, resp.Status)
	}
}

// unwrapURL drops the URL from a client error: it may carry a token.
func unwrapURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, time.Second), maxRetryAfter), true
}

func (s *Sender) count(endpoint, result string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.EventDelivery(endpoint, result)
	}
}
