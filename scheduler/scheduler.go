// Package scheduler turns bookings into planned messages, keeps them in the
// store and one task per scheduled message in the task queue, through every
// change (reschedule, treatment reported, cancel, receipts, replies).
// Client is the Go API a clinic backend (or aftercare's own HTTP API) calls.
package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aftercare/aftercare"
)

// Store keeps booking records. The redisstore package implements it.
type Store interface {
	// Create stores rec, to expire at expireAt, unless a record with the same
	// id exists; then it returns the stored record and false.
	Create(ctx context.Context, rec *aftercare.Record, expireAt time.Time) (*aftercare.Record, bool, error)
	// Get returns the record of a booking, or an ENOTFOUND error.
	Get(ctx context.Context, id string) (*aftercare.Record, error)
	// States returns a booking's version, status, and the status of each
	// message (without times), more cheaply than Get; or ENOTFOUND.
	States(ctx context.Context, id string) (*aftercare.Timeline, error)
	// Update applies change to the current record atomically, calling it
	// again if a worker changed the record meanwhile; change returns when
	// the record should expire.
	Update(ctx context.Context, id string, change func(rec *aftercare.Record) (time.Time, error)) (*aftercare.Record, error)
	// IndexPhone notes that booking id texts phone; Bookings lists the
	// bookings of a phone, newest first.
	IndexPhone(ctx context.Context, phone, id string, at, expireAt time.Time) error
	Bookings(ctx context.Context, phone string) ([]string, error)
	// SetOptOut records that phone opted out of SMS (out) or back in.
	SetOptOut(ctx context.Context, phone string, out bool, at time.Time) error
	// ByProvider finds the message a provider id belongs to; FirstReceipt
	// tells a delivery receipt seen before from a new one.
	ByProvider(ctx context.Context, providerID string) (aftercare.MessageRef, error)
	FirstReceipt(ctx context.Context, key string) (bool, error)
	// ForgetReceipt undoes FirstReceipt, for a receipt that could not be
	// applied: the provider's next try is applied then.
	ForgetReceipt(ctx context.Context, key string) error
	// KeepReceipt keeps a receipt that came before its message was
	// recorded sent: recording it reads them (see Sent), and
	// DropEarlyReceipts drops the first n once applied.
	KeepReceipt(ctx context.Context, r aftercare.Receipt) error
	DropEarlyReceipts(ctx context.Context, providerID string, n int) error
}

// Tasks keeps one task per scheduled message, which runs the message's
// send at its time. The taskqueue package implements it.
type Tasks interface {
	// Schedule makes sure the task of message ref exists, due at at; one
	// that exists already is left as it is.
	Schedule(ctx context.Context, ref aftercare.MessageRef, at time.Time) error
	// ScheduleNew is Schedule for a message of a booking just created,
	// none of whose tasks can exist yet: it may skip looking for one.
	ScheduleNew(ctx context.Context, ref aftercare.MessageRef, at time.Time) error
	// Unschedule removes the task of message ref. One that already ran, is
	// running (it finds its message changed when it claims it, and stops)
	// or never existed is no error.
	Unschedule(ctx context.Context, ref aftercare.MessageRef) error
}

// Config holds what the Client needs besides its Store and Tasks.
type Config struct {
	// Protocols by treatment.
	Protocols map[string]aftercare.Protocol
	// Clinic whose quiet hours apply.
	Clinic aftercare.Clinic
	// Retention is how long a booking record is kept after its last
	// deadline. Default 30 days.
	Retention time.Duration
	// Problems, if set, hears of every message that a person at the clinic
	// must know about (see Ended).
	Problems Problems
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Problems takes the messages a person at the clinic must know about. The
// inbox implements it.
type Problems interface {
	Report(ctx context.Context, p aftercare.Problem) error
}

// ProblemsFunc adapts a function to Problems.
type ProblemsFunc func(ctx context.Context, p aftercare.Problem) error

// Report calls f.
func (f ProblemsFunc) Report(ctx context.Context, p aftercare.Problem) error { return f(ctx, p) }

// Client schedules bookings. It is safe for concurrent use.
type Client struct {
	store Store
	tasks Tasks
	cfg   Config
}

// New returns a Client that keeps records in store and tasks in tasks.
func New(store Store, tasks Tasks, cfg Config) *Client {
	if cfg.Retention == 0 {
		cfg.Retention = 30 * 24 * time.Hour
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
	p, err := c.check(&b)
	if err != nil {
		return nil, false, err
	}

	now := c.cfg.Now()
	rec := &aftercare.Record{
		Booking:     b,
		Fingerprint: Fingerprint(&b),
		CreatedAt:   now,
		Timeline: aftercare.Timeline{
			ID:       b.ID,
			Version:  1,
			Status:   aftercare.BookingScheduled,
			Messages: Plan(&b, p, c.cfg.Clinic, now, now),
		},
	}
	if tl, err := c.past(ctx, rec, now); tl != nil || err != nil {
		return tl, false, err
	}
	rec.Note(aftercare.Event{At: now, Kind: aftercare.EventBooked, By: byClinic,
		Detail: fmt.Sprintf("%s on %s", b.Treatment, b.AppointmentAt.In(b.Location()).Format(time.RFC3339))})
	expired := notePlanned(rec, nil, now)

	stored, created, err := c.store.Create(ctx, rec, c.expiry(rec, now))
	if err != nil {
		return nil, false, fmt.Errorf("store booking %s: %w", b.ID, err)
	}
	if !created {
		if stored.Fingerprint != rec.Fingerprint {
			return nil, false, aftercare.Errorf(aftercare.ECONFLICT,
				"booking %s already exists with different details; reschedule it to change them", b.ID)
		}
		// A repeat tells a person what the first call may have stopped
		// before telling (the same problem told again is one item).
		rec, expired = stored, nil
		for _, m := range stored.Messages {
			if m.Status == aftercare.StatusExpired && stored.Version == 1 {
				expired = append(expired, m)
			}
		}
	}
	if err := c.index(ctx, rec, now); err != nil {
		return nil, false, err
	}
	// Enqueue also for a repeat: if an earlier call stored the record but
	// failed before all its tasks were in Redis, this fills the gap. Tasks
	// that exist already are refused by their ids.
	if err := c.sync(ctx, nil, rec, created); err != nil {
		return nil, false, err
	}
	if err := c.reportExpired(ctx, rec, expired); err != nil {
		return nil, false, err
	}
	tl := timeline(rec)
	if created {
		tl.Warnings = lateWarnings(rec, now)
	}
	return tl, created, nil
}

// past refuses a new booking whose messages were all due, deadline and
// all, before now: its treatment is long over and nothing could be sent.
// The same booking made earlier, while it could, is answered as a repeat,
// and other details for its id as a conflict.
func (c *Client) past(ctx context.Context, rec *aftercare.Record, now time.Time) (*aftercare.Timeline, error) {
	last := time.Time{}
	for _, m := range rec.Messages {
		if m.Deadline.After(last) {
			last = m.Deadline
		}
	}
	if len(rec.Messages) == 0 || last.After(now) {
		return nil, nil
	}
	stored, err := c.store.Get(ctx, rec.ID)
	switch {
	case err == nil && stored.Fingerprint == rec.Fingerprint:
		return timeline(stored), nil
	case err == nil:
		return nil, aftercare.Errorf(aftercare.ECONFLICT, "booking %s already exists with different details; reschedule it to change them", rec.ID)
	case aftercare.ErrorCode(err) != aftercare.ENOTFOUND:
		return nil, err
	}
	b := &rec.Booking
	return nil, (aftercare.Fields{{Field: "appointment_at", Message: fmt.Sprintf(
		"is in the past: the treatment ended %s, and the last of its messages was due by %s; nothing could be sent. Check the date",
		b.End().In(b.Location()).Format(time.RFC3339), last.In(b.Location()).Format(time.RFC3339))}}).Err("the booking is not valid")
}

// lateWarnings says which messages of a booking that arrived late cannot
// go: those whose time had passed when it came, planned expired or
// skipped.
func lateWarnings(rec *aftercare.Record, now time.Time) []string {
	var out []string
	for _, m := range rec.Messages {
		if (m.Status == aftercare.StatusExpired || m.Status == aftercare.StatusSkipped) && (m.SendAt.Before(now) || !m.Deadline.After(now)) {
			out = append(out, fmt.Sprintf("%s by %s will not go: %s", m.Step, m.Channel, m.Note))
		}
	}
	return out
}

// Who the audit trail names for what the scheduler does.
const (
	byClinic  = "clinic"    // the clinic's systems, through the API
	byPatient = "patient"   // a text from the patient's number
	bySelf    = "aftercare" // a rule of aftercare's own
)

// notePlanned adds to rec's audit trail each message planned expired or
// skipped that was not so in prev: it cannot go before its deadline, or
// its step is left out in quiet hours. It returns the expired ones, which a
// person may have to know about (see reportExpired).
func notePlanned(rec *aftercare.Record, prev []aftercare.Message, now time.Time) []aftercare.Message {
	kinds := map[aftercare.MessageStatus]aftercare.EventKind{
		aftercare.StatusExpired: aftercare.EventExpired, aftercare.StatusSkipped: aftercare.EventSkipped,
	}
	var expired []aftercare.Message
	for _, m := range rec.Messages {
		kind, ok := kinds[m.Status]
		if !ok || slices.ContainsFunc(prev, func(o aftercare.Message) bool {
			return o.Step == m.Step && o.Channel == m.Channel && o.Status == m.Status
		}) {
			continue
		}
		rec.Note(aftercare.Event{At: now, Kind: kind, Step: m.Step, Channel: m.Channel, Status: m.Status, By: bySelf, Detail: m.Note})
		if m.Status == aftercare.StatusExpired {
			expired = append(expired, m)
		}
	}
	return expired
}

// reportExpired tells a person about the messages of rec planned expired
// whose step then reaches the patient by no other message (see report).
func (c *Client) reportExpired(ctx context.Context, rec *aftercare.Record, expired []aftercare.Message) error {
	for _, m := range expired {
		if err := c.report(ctx, rec, m.Ref(rec.ID, rec.Version), aftercare.StatusExpired, m.Note); err != nil {
			return fmt.Errorf("report expired %s %s: %w", m.Step, m.Channel, err)
		}
	}
	return nil
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

// sync brings the tasks in Redis in line with rec, which was old before a
// change (old is nil for a new booking): it removes the task of every
// message that was scheduled in old and is no longer scheduled under the
// same version, and makes sure there is one for every scheduled message of
// rec. Tasks that exist already are left as they are, so sync can run again
// safely. created says rec was just made, so none of its tasks exist yet.
//
// Changes to one booking may overlap: a newer change can commit, and take
// out the tasks of this version, before this sync puts them in. So sync
// reads the record again afterwards and takes out each task it put in whose
// message a change has since taken away: the booking moved to another
// version, or the message is gone, cancelled or suppressed. (A message a
// worker has meanwhile claimed, sent or retried keeps its task: that is
// the worker's.) Whichever change comes last, the tasks are the scheduled
// messages.
func (c *Client) sync(ctx context.Context, old, rec *aftercare.Record, created bool) error {
	if old != nil {
		var gone []aftercare.MessageRef
		for _, m := range old.Messages {
			if m.Status != aftercare.StatusScheduled {
				continue
			}
			if now, ok := rec.Message(m.Step, m.Channel); ok && rec.Version == old.Version && now.Status == aftercare.StatusScheduled {
				continue
			}
			gone = append(gone, c.ref(old, m))
		}
		if err := each(gone, func(ref aftercare.MessageRef) error { return c.tasks.Unschedule(ctx, ref) }); err != nil {
			return err
		}
	}
	var put []aftercare.Message
	for _, m := range rec.Messages {
		if m.Status == aftercare.StatusScheduled {
			put = append(put, m)
		}
	}
	if len(put) == 0 {
		return nil
	}
	schedule := c.tasks.Schedule
	if created {
		schedule = c.tasks.ScheduleNew
	}
	if err := each(put, func(m aftercare.Message) error { return schedule(ctx, c.ref(rec, m), m.SendAt) }); err != nil {
		return err
	}
	cur, err := c.store.States(ctx, rec.ID)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		cur, err = &aftercare.Timeline{}, nil // gone: none of its tasks may stay
	}
	if err != nil {
		return err
	}
	var stale []aftercare.MessageRef
	for _, p := range put {
		m, ok := cur.Message(p.Step, p.Channel)
		if !ok || cur.Version != rec.Version || m.Status == aftercare.StatusCancelled || m.Status == aftercare.StatusSuppressed {
			stale = append(stale, c.ref(rec, p))
		}
	}
	return each(stale, func(ref aftercare.MessageRef) error { return c.tasks.Unschedule(ctx, ref) })
}

// each calls do for every item at once and returns the first error, if
// any. Each call is a Redis round trip of its own (asynq has no batches),
// and a booking's dozen need not wait for one another.
func each[T any](items []T, do func(T) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, item := range items {
		wg.Go(func() { errs[i] = do(item) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// index lets replies from the patient's phone find the booking.
func (c *Client) index(ctx context.Context, rec *aftercare.Record, now time.Time) error {
	if rec.Booking.Patient.Phone == "" {
		return nil
	}
	return c.store.IndexPhone(ctx, rec.Booking.Patient.Phone, rec.ID, rec.CreatedAt, c.expiry(rec, now))
}

// check validates b in place (see aftercare.Booking.Normalize) and returns
// the protocol of its treatment.
func (c *Client) check(b *aftercare.Booking) (aftercare.Protocol, error) {
	if err := b.Normalize(); err != nil {
		return aftercare.Protocol{}, err
	}
	return c.protocol(b.Treatment)
}

// ref is the task reference of m, a message of rec: with its deadline, and
// the priority of its step.
func (c *Client) ref(rec *aftercare.Record, m aftercare.Message) aftercare.MessageRef {
	ref := m.Ref(rec.ID, rec.Version)
	ref.Deadline = m.Deadline.Unix()
	if s, ok := c.cfg.Protocols[rec.Booking.Treatment].Step(m.Step); ok && s.Priority == aftercare.PriorityClinical {
		ref.Priority = aftercare.PriorityClinical
	}
	return ref
}

func (c *Client) protocol(treatment string) (aftercare.Protocol, error) {
	p, ok := c.cfg.Protocols[treatment]
	if !ok {
		return p, (aftercare.Fields{{Field: "treatment", Message: fmt.Sprintf("unknown treatment %q; known: %s", treatment, c.treatments())}}).Err("the booking is not valid")
	}
	return p, nil
}

// expiry is when the record may go: a retention period after its last
// deadline, or after now if that is later.
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

// timeline is the API view of rec, every time in the patient's zone as the
// plan's are: a booking whose messages are all final is completed.
func timeline(rec *aftercare.Record) *aftercare.Timeline {
	t := rec.Timeline
	t.Messages = slices.Clone(rec.Messages)
	loc := rec.Booking.Location()
	t.History = slices.Clone(rec.History)
	for i := range t.History {
		t.History[i].At = t.History[i].At.In(loc)
	}
	t.Replies = slices.Clone(rec.Replies)
	for i := range t.Replies {
		t.Replies[i].At = t.Replies[i].At.In(loc)
	}
	if t.Status == aftercare.BookingScheduled && !slices.ContainsFunc(t.Messages, func(m aftercare.Message) bool { return !m.Status.Final() }) {
		t.Status = aftercare.BookingCompleted
	}
	return &t
}

// Fingerprint identifies the content of a normalised booking: it tells an
// identical repeat from a conflicting one, and consent links are bound to
// it.
func Fingerprint(b *aftercare.Booking) string {
	data, _ := json.Marshal(b) // cannot fail: plain data
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}
