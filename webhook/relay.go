package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// Outbox is where the relay finds events; the redisstore package
// implements it.
type Outbox interface {
	// DueEvents leases up to limit bookings and inbox items with events
	// not handed over yet.
	DueEvents(ctx context.Context, limit int) ([]aftercare.Pending, error)
	// Unrelayed returns the audit trail entries of booking id not handed
	// over, the number of the first, and when the booking was created.
	Unrelayed(ctx context.Context, id string) ([]aftercare.Event, int, time.Time, error)
	// Relayed records that booking id's trail is handed over up to entry n.
	Relayed(ctx context.Context, id string, n int) error
	InboxItem(ctx context.Context, id string) (*aftercare.InboxItem, error)
	// RelayedItem and ItemRelayed keep which events of an inbox item are
	// handed over.
	RelayedItem(ctx context.Context, id string) ([]string, error)
	ItemRelayed(ctx context.Context, id, eventID string) error
	// EventsDone ends a lease.
	EventsDone(ctx context.Context, p aftercare.Pending) error
}

// Queue takes deliveries; the taskqueue package implements it. A delivery
// already queued is refused there, by its task id.
type Queue interface {
	Deliver(ctx context.Context, d aftercare.Delivery) error
}

// RelayConfig configures a Relay.
type RelayConfig struct {
	Outbox    Outbox
	Queue     Queue
	Endpoints []Endpoint
	// Interval is how often the relay looks for events (default 250 ms).
	Interval time.Duration
	Logger   *slog.Logger
}

// Relay hands new events to the queue, one delivery per event and
// endpoint that wants it. Several relays (one per worker process) may run
// at once: each takes what it handles under a lease, and the queue refuses
// a delivery twice.
type Relay struct {
	cfg RelayConfig
	log *slog.Logger
}

// NewRelay returns a Relay.
func NewRelay(cfg RelayConfig) *Relay {
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg, log: log.With("component", "events")}
}

// batch is how many bookings and items one pass leases.
const batch = 100

// Run relays until ctx is done.
func (r *Relay) Run(ctx context.Context) {
	wait := r.cfg.Interval
	for {
		for {
			n, err := r.Pass(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				// Failures wait longer each time, up to half a minute, so
				// Redis being away is not a flood of lines.
				r.log.Error("events not handed over; trying again", "error", err, "in", wait)
				wait = min(2*wait, 30*time.Second)
			case err == nil:
				wait = r.cfg.Interval
			}
			if n < batch || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Pass hands over the events of what is due now, and returns how many
// bookings and items it took. One that fails stays due and comes back when
// its lease ends.
func (r *Relay) Pass(ctx context.Context) (int, error) {
	due, err := r.cfg.Outbox.DueEvents(ctx, batch)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, p := range due {
		if err := r.relay(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.cfg.Outbox.EventsDone(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return len(due), errors.Join(errs...)
}

// relay hands over the events of one booking or item.
func (r *Relay) relay(ctx context.Context, p aftercare.Pending) error {
	if p.ItemID != "" {
		item, err := r.cfg.Outbox.InboxItem(ctx, p.ItemID)
		if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
			return nil
		}
		if err != nil {
			return err
		}
		done, err := r.cfg.Outbox.RelayedItem(ctx, p.ItemID)
		if err != nil {
			return err
		}
		for _, n := range aftercare.InboxNotices(item) {
			if slices.Contains(done, n.ID) {
				continue
			}
			if err := r.deliver(ctx, n); err != nil {
				return err
			}
			if err := r.cfg.Outbox.ItemRelayed(ctx, p.ItemID, n.ID); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		entries, first, created, err := r.cfg.Outbox.Unrelayed(ctx, p.BookingID)
		if err != nil || len(entries) == 0 {
			return err
		}
		for i, e := range entries {
			if n, ok := aftercare.BookingNotice(p.BookingID, created, first+i, e); ok {
				if err := r.deliver(ctx, n); err != nil {
					return err
				}
			}
		}
		if err := r.cfg.Outbox.Relayed(ctx, p.BookingID, first+len(entries)-1); err != nil {
			return err
		}
	}
}

// deliver queues n for each endpoint that wants it.
func (r *Relay) deliver(ctx context.Context, n aftercare.Notice) error {
	body := n.Body()
	for _, e := range r.cfg.Endpoints {
		if !e.Wants(n.Type) {
			continue
		}
		if err := r.cfg.Queue.Deliver(ctx, aftercare.Delivery{Endpoint: e.Name, EventID: n.ID, Body: body}); err != nil {
			return fmt.Errorf("queue event %s for %s: %w", n.ID, e.Name, err)
		}
	}
	return nil
}
