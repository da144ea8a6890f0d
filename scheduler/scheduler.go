// Package scheduler turns bookings into planned messages and asynq tasks.
// Client is the Go API a clinic backend (or aftercare's own HTTP API) calls.
package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/aftercare/aftercare"
)

// Store keeps booking records. The redisstore package implements it.
type Store interface {
	// Create stores rec, to expire at expireAt, unless a record with the same
	// id exists; then it returns the stored record and false.
	Create(ctx context.Context, rec *aftercare.Record, expireAt time.Time) (*aftercare.Record, bool, error)
	// Get returns the record of a booking, or an ENOTFOUND error.
	Get(ctx context.Context, id string) (*aftercare.Record, error)
}

// Enqueuer puts tasks into Redis; *asynq.Client implements it.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Config holds what the Client needs besides its Store and Enqueuer.
type Config struct {
	// Protocols by treatment.
	Protocols map[string]aftercare.Protocol
	// Clinic whose quiet hours apply.
	Clinic aftercare.Clinic
	// Retention is how long a booking record is kept after its last
	// deadline. Default 30 days.
	Retention time.Duration
	// MaxRetry is how often a failing send is retried (deadlines cut retries
	// short). Default 25.
	MaxRetry int
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Client schedules bookings. It is safe for concurrent use.
type Client struct {
	store Store
	tasks Enqueuer
	cfg   Config
}

// New returns a Client that stores records in store and enqueues tasks with
// tasks.
func New(store Store, tasks Enqueuer, cfg Config) *Client {
	if cfg.Retention == 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.MaxRetry == 0 {
		cfg.MaxRetry = 25
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{store: store, tasks: tasks, cfg: cfg}
}

// Book validates b, plans its messages, stores the booking and enqueues one
// task per message due. It returns the timeline and whether the booking is
// new.
//
// Booking the same id again with an identical body is safe: nothing new is
// enqueued and the stored timeline is returned with created false. A
// different body for an existing id is an ECONFLICT error.
func (c *Client) Book(ctx context.Context, b aftercare.Booking) (*aftercare.Timeline, bool, error) {
	if err := b.Normalize(); err != nil {
		return nil, false, err
	}
	p, ok := c.cfg.Protocols[b.Treatment]
	if !ok {
		return nil, false, (&aftercare.Fields{{Field: "treatment", Message: fmt.Sprintf("unknown treatment %q; known: %s", b.Treatment, c.treatments())}}).Err("the booking is not valid")
	}

	now := c.cfg.Now()
	rec := &aftercare.Record{
		Booking:     b,
		Fingerprint: fingerprint(&b),
		CreatedAt:   now,
		Timeline: aftercare.Timeline{
			ID:       b.ID,
			Version:  1,
			Status:   aftercare.BookingScheduled,
			Messages: Plan(&b, p, c.cfg.Clinic.QuietHours, now),
		},
	}

	stored, created, err := c.store.Create(ctx, rec, c.expiry(rec, now))
	if err != nil {
		return nil, false, fmt.Errorf("store booking %s: %w", b.ID, err)
	}
	if !created {
		if stored.Fingerprint != rec.Fingerprint {
			return nil, false, aftercare.Errorf(aftercare.ECONFLICT,
				"booking %s already exists with different details; use PUT /v1/bookings/%s to change it", b.ID, b.ID)
		}
		rec = stored
	}
	// Enqueue also for a repeat: if an earlier call stored the record but
	// failed before all its tasks were in Redis, this fills the gap. Tasks
	// that exist already are refused by their ids.
	if err := c.enqueue(ctx, rec); err != nil {
		return nil, false, err
	}
	return timeline(rec), created, nil
}

// Get returns the timeline of booking id, or an ENOTFOUND error.
func (c *Client) Get(ctx context.Context, id string) (*aftercare.Timeline, error) {
	if !aftercare.ValidID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	rec, err := c.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return timeline(rec), nil
}

// enqueue adds a task for every scheduled message of rec.
func (c *Client) enqueue(ctx context.Context, rec *aftercare.Record) error {
	for _, m := range rec.Messages {
		if m.Status != aftercare.StatusScheduled {
			continue
		}
		ref := m.Ref(rec.ID, rec.Version)
		task := asynq.NewTask(ref.TaskType(), ref.Payload(),
			asynq.TaskID(ref.TaskID()),
			asynq.Queue(ref.Queue()),
			asynq.ProcessAt(m.SendAt),
			asynq.MaxRetry(c.cfg.MaxRetry),
			asynq.Timeout(time.Minute),
		)
		_, err := c.tasks.EnqueueContext(ctx, task)
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("enqueue %s: %w", ref.TaskID(), err)
		}
	}
	return nil
}

// expiry is when the record may go: a retention period after its last
// deadline.
func (c *Client) expiry(rec *aftercare.Record, now time.Time) time.Time {
	last := now
	for _, m := range rec.Messages {
		if m.Deadline.After(last) {
			last = m.Deadline
		}
	}
	return last.Add(c.cfg.Retention)
}

func (c *Client) treatments() string {
	var names []string
	for t := range c.cfg.Protocols {
		names = append(names, t)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// timeline is the API view of rec: a booking whose messages are all final
// is completed.
func timeline(rec *aftercare.Record) *aftercare.Timeline {
	t := rec.Timeline
	t.Messages = slices.Clone(rec.Messages)
	if t.Status == aftercare.BookingScheduled && !slices.ContainsFunc(t.Messages, func(m aftercare.Message) bool { return !m.Status.Final() }) {
		t.Status = aftercare.BookingCompleted
	}
	return &t
}

// fingerprint identifies the content of a normalised booking, to tell an
// identical repeat from a conflicting one.
func fingerprint(b *aftercare.Booking) string {
	data, _ := json.Marshal(b) // cannot fail: plain data
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}
