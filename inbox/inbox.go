// Package inbox is the clinic's inbox: where everything a person at the
// clinic must look at lands. It reads every text a patient sends (see
// aftercare.ReadReply), keeps it as an item, acts on it (opt-out, opt-in,
// consent acknowledgement), answers the patient at once, and tells the
// clinic: an alert email for every text that needs a person, an SMS to the
// on-call phone for urgent ones, again and again until someone resolves
// the item.
package inbox

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aftercare/aftercare"
)

// Store keeps inbox items. The redisstore package implements it.
type Store interface {
	// ReserveInboxID links the provider's id of a text to item id, or
	// returns the id linked before and false.
	ReserveInboxID(ctx context.Context, providerID, id string) (string, bool, error)
	PutInboxItem(ctx context.Context, item *aftercare.InboxItem, expireAt time.Time) error
	InboxItem(ctx context.Context, id string) (*aftercare.InboxItem, error)
	UpdateInboxItem(ctx context.Context, id string, change func(item *aftercare.InboxItem) (time.Time, error)) (*aftercare.InboxItem, error)
	InboxItems(ctx context.Context, f aftercare.InboxFilter, cursor string, limit int) ([]*aftercare.InboxItem, string, error)
}

// Bookings is what a text does to the patient's bookings. The scheduler
// implements it.
type Bookings interface {
	// Patient returns the booking a text from phone belongs to, or nil.
	Patient(ctx context.Context, phone string) (*aftercare.Record, error)
	// OptOut opts phone out of texts, as the patient asked (by "") or as
	// by, at the clinic, read a text.
	OptOut(ctx context.Context, phone, by string, at time.Time) error
	OptIn(ctx context.Context, phone string, at time.Time) error
	// Acknowledge records a YES; it returns the booking acknowledged, or "".
	Acknowledge(ctx context.Context, phone string, at time.Time) (string, error)
	NoteReply(ctx context.Context, bookingID string, r aftercare.Reply) error
	// Record returns a booking's record, or an ENOTFOUND error.
	Record(ctx context.Context, id string) (*aftercare.Record, error)
}

// Renderer writes the answers to patients and the alerts to staff. The
// messages package implements it.
type Renderer interface {
	Help(locale string) (string, error)
	Answer(kind, locale string, opensAt time.Time) (string, error)
	Alert(item *aftercare.InboxItem, round int, ch aftercare.Channel) (aftercare.Outgoing, error)
}

// Alerts puts alert tasks in the task queue, due at at; an alert already
// there is left as it is. The taskqueue package implements it.
type Alerts interface {
	Alert(ctx context.Context, ref aftercare.AlertRef, at time.Time) error
}

// Sender delivers an alert.
type Sender interface {
	Send(ctx context.Context, msg aftercare.Outgoing) (providerID string, err error)
}

// Config holds an Inbox's dependencies.
type Config struct {
	Store    Store
	Bookings Bookings
	Renderer Renderer
	Alerts   Alerts
	// SMS and Email send the alerts to the on-call phone and the care inbox.
	SMS, Email Sender
	// Clinic gives the opening hours, the answers' settings and who is
	// alerted.
	Clinic aftercare.Clinic
	// RedFlags make a text urgent.
	RedFlags *aftercare.RedFlags
	// Retention is how long a resolved item is kept. Default 30 days.
	Retention time.Duration
	Logger    *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Inbox is the clinic's inbox. It is safe for concurrent use.
type Inbox struct {
	cfg  Config
	zone *time.Location
	log  *slog.Logger
}

// New returns an Inbox.
func New(cfg Config) *Inbox {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Retention == 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	zone, err := aftercare.LoadLocation(cfg.Clinic.Timezone)
	if err != nil {
		zone = time.UTC
	}
	return &Inbox{cfg: cfg, zone: zone, log: cfg.Logger}
}

// maxText bounds a stored text; a concatenated SMS is at most ten parts of
// 160.
const maxText = 1600

// Receive takes a text a patient sent and returns what to answer them
// ("" for nothing). It keeps the text as an inbox item, whatever it says and
// whoever sent it; acts on what it asks; and, for a text that needs a
// person, alerts the clinic through alert tasks (at once; an urgent one
// again every ReescalateAfter until resolved). A text the provider
// delivers again (same provider id) changes nothing and gets the same
// answer.
func (in *Inbox) Receive(ctx context.Context, t aftercare.InboundText) (string, error) {
	now := in.cfg.Now()
	if t.ReceivedAt.IsZero() {
		t.ReceivedAt = now
	}
	id := aftercare.NewInboxID(t.ReceivedAt)
	if t.ProviderID != "" {
		had, fresh, err := in.cfg.Store.ReserveInboxID(ctx, t.ProviderID, id)
		if err != nil {
			return "", err
		}
		if !fresh {
			item, err := in.cfg.Store.InboxItem(ctx, had)
			if err == nil {
				return item.Answer, nil // delivered again: done before
			}
			if aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
				return "", err
			}
			id = had // reserved, but the first delivery stopped before storing it
		}
	}
	item := &aftercare.InboxItem{
		ID: id, Kind: aftercare.InboxReply, Status: aftercare.InboxOpen, Urgency: aftercare.Normal,
		ReceivedAt: t.ReceivedAt, From: t.From, Text: clip(strings.TrimSpace(t.Body), maxText), ProviderID: t.ProviderID,
	}
	r := aftercare.ReadReply(t.Body, in.cfg.RedFlags)
	item.Keyword, item.Flags = r.Keyword, r.Flags
	if r.Urgent {
		item.Urgency = aftercare.Urgent
	}
	if err := in.act(ctx, item, r); err != nil {
		return "", err
	}
	expire := time.Time{}
	if item.Status == aftercare.InboxResolved {
		expire = now.Add(in.cfg.Retention)
	}
	if err := in.cfg.Store.PutInboxItem(ctx, item, expire); err != nil {
		return "", err
	}
	if item.BookingID != "" {
		if err := in.cfg.Bookings.NoteReply(ctx, item.BookingID, aftercare.Reply{At: item.ReceivedAt, InboxID: item.ID, Urgency: item.Urgency}); err != nil {
			return "", err
		}
	}
	if item.Status == aftercare.InboxOpen {
		if err := in.alert(ctx, item); err != nil {
			return "", err
		}
	}
	in.log.Info("patient text", "inbox_item", item.ID, "booking", item.BookingID, "keyword", string(item.Keyword),
		"urgency", item.Urgency, "status", item.Status, "action", item.Action)
	return item.Answer, nil
}

// act carries out what the text asks, finds the booking it belongs to, and
// decides the answer and whether the item waits for a person.
func (in *Inbox) act(ctx context.Context, item *aftercare.InboxItem, r aftercare.Reading) error {
	phone, perr := aftercare.NormalizePhone(item.From)
	locale := r.Locale
	if perr == nil {
		item.From = phone
		rec, err := in.cfg.Bookings.Patient(ctx, phone)
		if err != nil {
			return err
		}
		if rec != nil {
			item.BookingID, item.FirstName, locale = rec.ID, rec.Booking.Patient.FirstName, rec.Booking.Patient.Locale
		}
	}
	if !slices.Contains(aftercare.Locales(), locale) {
		locale = aftercare.DefaultLocale
	}
	var actions []string
	switch {
	case perr != nil:
		actions = append(actions, "the sender is not a phone number aftercare can text")
	case r.Keyword == aftercare.KeywordStop:
		if err := in.cfg.Bookings.OptOut(ctx, phone, "", item.ReceivedAt); err != nil {
			return err
		}
		item.OptedOutAt = &item.ReceivedAt
		actions = append(actions, "opted the number out of SMS")
	case r.Keyword == aftercare.KeywordStart:
		if err := in.cfg.Bookings.OptIn(ctx, phone, item.ReceivedAt); err != nil {
			return err
		}
		item.OptedInAt = &item.ReceivedAt
		actions = append(actions, "opted the number back into SMS")
	case r.Keyword == aftercare.KeywordYes:
		id, err := in.cfg.Bookings.Acknowledge(ctx, phone, item.ReceivedAt)
		if err != nil {
			return err
		}
		if id != "" {
			item.BookingID = id
			actions = append(actions, "recorded the consent acknowledgement of booking "+id)
		} else {
			actions = append(actions, "found no consent waiting for an acknowledgement")
		}
	}
	answer, err := in.answer(r, locale, item.ReceivedAt)
	if err != nil {
		return err
	}
	item.Answer = answer
	if r.ForClinic {
		actions = append(actions, "kept it for the clinic")
	} else {
		item.Status = aftercare.InboxResolved
		at := item.ReceivedAt
		item.ResolvedAt, item.ResolvedBy = &at, "aftercare"
	}
	if answer != "" {
		actions = append(actions, "answered")
	}
	item.Action = strings.Join(actions, "; ")
	return nil
}

// answer is what the patient is told at once: for an urgent text, to call
// the emergency number and that the team was alerted; HELP's answer; a
// confirmation of an opt-out carriers did not see as one; for another text
// that needs a person, when to expect an answer (unless the clinic turned
// that off). Exact keywords otherwise get none: carriers confirm STOP and
// START themselves.
func (in *Inbox) answer(r aftercare.Reading, locale string, at time.Time) (string, error) {
	switch {
	case r.Urgent:
		return in.cfg.Renderer.Answer(aftercare.AnswerUrgent, locale, time.Time{})
	case r.Keyword == aftercare.KeywordHelp && r.Exact:
		return in.cfg.Renderer.Help(locale)
	case r.Keyword == aftercare.KeywordStop && !r.Exact:
		return in.cfg.Renderer.Answer(aftercare.AnswerStop, locale, time.Time{})
	case !r.ForClinic || in.cfg.Clinic.Replies.Off:
		return "", nil
	}
	if open, next := in.cfg.Clinic.OpeningHours.Open(at, in.zone); !open && !next.IsZero() {
		return in.cfg.Renderer.Answer(aftercare.AnswerClosed, locale, next)
	}
	return in.cfg.Renderer.Answer(aftercare.AnswerOpen, locale, time.Time{})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Get returns inbox item id, or an ENOTFOUND error.
func (in *Inbox) Get(ctx context.Context, id string) (*aftercare.InboxItem, error) {
	if !aftercare.ValidInboxID(id) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no inbox item %q", id)
	}
	return in.cfg.Store.InboxItem(ctx, id)
}

// MaxPage bounds a page of List.
const MaxPage = 200

// List returns the items f picks, newest first, limit at a time after
// cursor; it returns the cursor of the next page ("" after the last). Open
// items of any urgency come urgent first: all the urgent ones, then the
// others.
func (in *Inbox) List(ctx context.Context, f aftercare.InboxFilter, cursor string, limit int) ([]*aftercare.InboxItem, string, error) {
	if limit < 1 || limit > MaxPage {
		return nil, "", (aftercare.Fields{{Field: "limit", Message: fmt.Sprintf("must be between 1 and %d", MaxPage)}}).Err("the query is not valid")
	}
	phase, after, ok := parseCursor(cursor)
	if !ok {
		return nil, "", (aftercare.Fields{{Field: "cursor", Message: "is not a cursor this list gave; start again without it"}}).Err("the query is not valid")
	}
	if f.Status != aftercare.InboxOpen || f.Urgency != "" {
		return in.cfg.Store.InboxItems(ctx, f, after, limit)
	}
	var items []*aftercare.InboxItem
	if phase == cursorUrgent {
		urgent, next, err := in.cfg.Store.InboxItems(ctx, aftercare.InboxFilter{Status: aftercare.InboxOpen, Urgency: aftercare.Urgent}, after, limit)
		if err != nil {
			return nil, "", err
		}
		if next != "" {
			return urgent, cursorUrgent + "." + next, nil
		}
		if len(urgent) == limit { // the normal items start the next page
			return urgent, cursorNormal + ".", nil
		}
		items, after = urgent, ""
	}
	rest, next, err := in.cfg.Store.InboxItems(ctx, aftercare.InboxFilter{Status: aftercare.InboxOpen, Urgency: aftercare.Normal}, after, limit-len(items))
	if err != nil {
		return nil, "", err
	}
	items = append(items, rest...)
	if next == "" {
		return items, "", nil
	}
	return items, cursorNormal + "." + next, nil
}

// A cursor names where a page ends: an item id, after a phase in the
// urgent-first listing ("u." while urgent items are listed, "n." after).
const (
	cursorUrgent = "u"
	cursorNormal = "n"
)

// parseCursor reads a cursor; an empty one starts with the urgent items.
func parseCursor(c string) (phase, id string, ok bool) {
	if c == "" {
		return cursorUrgent, "", true
	}
	if aftercare.ValidInboxID(c) {
		return "", c, true
	}
	phase, id, _ = strings.Cut(c, ".")
	if (phase != cursorUrgent && phase != cursorNormal) || (id != "" && !aftercare.ValidInboxID(id)) {
		return "", "", false
	}
	return phase, id, true
}

// Resolve marks item id as taken care of, by who, with a note. Resolving
// again changes nothing.
func (in *Inbox) Resolve(ctx context.Context, id, by, note string) (*aftercare.InboxItem, error) {
	if _, err := in.Get(ctx, id); err != nil {
		return nil, err
	}
	now := in.cfg.Now()
	item, err := in.cfg.Store.UpdateInboxItem(ctx, id, func(item *aftercare.InboxItem) (time.Time, error) {
		if item.Status == aftercare.InboxResolved {
			return in.expiry(item), nil
		}
		item.Status, item.ResolvedAt, item.ResolvedBy, item.Note = aftercare.InboxResolved, &now, clip(by, 200), clip(note, 2000)
		return in.expiry(item), nil
	})
	if err != nil {
		return nil, err
	}
	in.log.Info("inbox item resolved", "inbox_item", id)
	return item, nil
}

// expiry is when a resolved item may go.
func (in *Inbox) expiry(item *aftercare.InboxItem) time.Time {
	return item.ResolvedAt.Add(in.cfg.Retention)
}

// OptOut opts the number of item id out of SMS, for a text staff judge to
// be an opt-out that aftercare did not read as one, and notes it on the
// item (it stays as it was otherwise).
func (in *Inbox) OptOut(ctx context.Context, id, by string) (*aftercare.InboxItem, error) {
	item, err := in.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	phone, err := aftercare.NormalizePhone(item.From)
	if err != nil {
		return nil, aftercare.Errorf(aftercare.ECONFLICT, "item %s did not come from a phone number aftercare texts", id)
	}
	by = clip(by, 200)
	now := in.cfg.Now()
	if err := in.cfg.Bookings.OptOut(ctx, phone, cmp.Or(by, "clinic"), now); err != nil {
		return nil, err
	}
	return in.cfg.Store.UpdateInboxItem(ctx, id, func(item *aftercare.InboxItem) (time.Time, error) {
		note := "opted the number out of SMS at the clinic's request"
		if by != "" {
			note += " (" + by + ")"
		}
		if item.OptedOutAt == nil {
			item.OptedOutAt = &now
		}
		if !strings.Contains(item.Action, note) {
			item.Action = strings.TrimPrefix(item.Action+"; "+note, "; ")
		}
		if item.Status == aftercare.InboxResolved {
			return in.expiry(item), nil
		}
		return time.Time{}, nil
	})
}
