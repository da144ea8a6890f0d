package aftercare

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Outbound events tell the clinic's own systems what happened, as signed
// webhooks (see package webhook). Each is derived from one entry of a
// booking's audit trail, or from an inbox item, so an event exists exactly
// when the change that causes it was stored. They are thin: ids, step,
// channel, status, error code and urgency, never a phone number, address,
// name or a patient's words; the receiver asks the API for details.

// EventType names an outbound event.
type EventType string

// Event types.
const (
	TypeBookingScheduled    EventType = "booking.scheduled"
	TypeBookingRescheduled  EventType = "booking.rescheduled"
	TypeBookingCancelled    EventType = "booking.cancelled"
	TypeBookingTreated      EventType = "booking.treated"
	TypeAftercareStopped    EventType = "booking.aftercare_stopped"
	TypeMessageScheduled    EventType = "message.scheduled" // planned again: a resend or a fallback
	TypeMessageSent         EventType = "message.sent"
	TypeMessageDelivered    EventType = "message.delivered"
	TypeMessageFailed       EventType = "message.failed"
	TypeMessageExpired      EventType = "message.expired"
	TypeMessageSkipped      EventType = "message.skipped"
	TypeMessageSuppressed   EventType = "message.suppressed"
	TypeMessageUnknown      EventType = "message.outcome_unknown"
	TypeConsentAcknowledged EventType = "consent.acknowledged"
	TypePatientOptedOut     EventType = "patient.opted_out"
	TypePatientOptedIn      EventType = "patient.opted_in"
	TypeInboxItemCreated    EventType = "inbox.item_created"
	TypeInboxItemResolved   EventType = "inbox.item_resolved"
)

// EventTypes lists every event type, in the order the README documents
// them.
func EventTypes() []EventType {
	return []EventType{
		TypeBookingScheduled, TypeBookingRescheduled, TypeBookingCancelled, TypeBookingTreated, TypeAftercareStopped,
		TypeMessageScheduled, TypeMessageSent, TypeMessageDelivered, TypeMessageFailed, TypeMessageExpired,
		TypeMessageSkipped, TypeMessageSuppressed, TypeMessageUnknown,
		TypeConsentAcknowledged, TypePatientOptedOut, TypePatientOptedIn,
		TypeInboxItemCreated, TypeInboxItemResolved,
	}
}

// Notice is one outbound event: the JSON body a webhook carries, and its
// id (the webhook-id header), which is the same on every delivery of it.
type Notice struct {
	ID        string     `json:"-"`
	Type      EventType  `json:"type"`
	Timestamp time.Time  `json:"timestamp"`
	Data      NoticeData `json:"data"`
}

// NoticeData is what a Notice is about. Sequence orders the events of one
// booking (or of one inbox item without a booking): a receiver that sees 7
// after 9 knows 7 is older.
type NoticeData struct {
	BookingID string  `json:"booking_id,omitempty"`
	InboxID   string  `json:"inbox_id,omitempty"`
	Sequence  int     `json:"sequence"`
	Step      string  `json:"step,omitempty"`
	Channel   Channel `json:"channel,omitempty"`
	// Status is the message's status after the change, or the inbox item's.
	Status string `json:"status,omitempty"`
	// ErrorCode is the provider's code for a failure ("twilio:30003").
	ErrorCode  string `json:"error_code,omitempty"`
	ProviderID string `json:"provider_id,omitempty"`
	// Method is how the patient acknowledged the consent: page or
	// sms_reply.
	Method string `json:"method,omitempty"`
	// Kind and Urgency describe an inbox item; Keyword what a text asked.
	Kind    InboxKind `json:"kind,omitempty"`
	Urgency Urgency   `json:"urgency,omitempty"`
	Keyword Keyword   `json:"keyword,omitempty"`
	// By is who made the change: clinic (its systems or its staff),
	// patient, aftercare (a rule of its own) or twilio.
	By string `json:"by,omitempty"`
}

// Body is the notice as a webhook body.
func (n Notice) Body() []byte {
	b, _ := json.Marshal(n) // cannot fail: strings, ints and a time
	return b
}

// errorCode finds a provider's error code in a reason.
var errorCode = regexp.MustCompile(`\b(twilio|smtp):[A-Za-z0-9-]+`)

// BookingNotice is the event entry seq of booking id's audit trail causes,
// and false for entries no event is sent for (a send run that changed
// nothing, a reply: the inbox tells of those). created is when the booking
// was made: its event ids differ from those of an earlier booking that had
// the same id and has expired.
func BookingNotice(id string, created time.Time, seq int, e Event) (Notice, bool) {
	n := Notice{
		ID: "ev_" + id + "_" + strconv.FormatInt(created.Unix(), 36) + "_" + strconv.Itoa(seq), Timestamp: e.At.UTC(),
		Data: NoticeData{BookingID: id, Sequence: seq, Step: e.Step, Channel: e.Channel, By: whoKind(e.By)},
	}
	switch e.Kind {
	case EventBooked:
		n.Type = TypeBookingScheduled
	case EventRescheduled:
		n.Type = TypeBookingRescheduled
	case EventCancelled:
		n.Type = TypeBookingCancelled
	case EventTreated:
		n.Type = TypeBookingTreated
	case EventStopped:
		n.Type = TypeAftercareStopped
	case EventAcknowledged:
		n.Type, n.Data.Method = TypeConsentAcknowledged, AckByPage
		if e.Channel == SMS {
			n.Data.Method, n.Data.ProviderID = AckBySMS, providerID(e.Detail)
		}
	case EventResend, EventFallback:
		n.Type, n.Data.Status = TypeMessageScheduled, string(StatusScheduled)
	case EventSend:
		status, ok := e.Status, e.Status != ""
		if !ok && !e.Unchanged { // written before entries said what they did
			status, ok = e.Outcome.Status()
		}
		if !ok || status == StatusScheduled {
			return n, false
		}
		n.Data.Status = string(status)
		if status == StatusSent {
			n.Data.ProviderID, _, _ = strings.Cut(e.Detail, " ") // "SM... (found at the provider)"
		}
	case EventReceipt, EventExpired, EventSkipped, EventSuppressed:
		if e.Status == "" {
			return n, false // a whole booking's texts, in entries written before each message had its own
		}
		n.Data.Status = string(e.Status)
	default:
		return n, false
	}
	if n.Type == "" {
		n.Type = messageType(MessageStatus(n.Data.Status))
	}
	if n.Data.Status != string(StatusSent) {
		n.Data.ErrorCode = errorCode.FindString(e.Detail)
	}
	return n, n.Type != ""
}

// whoKind is who made a change, as an event names it: a person named on a
// resend or an opt-out is "clinic", so no event carries a name.
func whoKind(by string) string {
	switch by {
	case "", "clinic", "patient", "aftercare", "twilio":
		return by
	}
	return "clinic"
}

// providerID is the provider's message id an acknowledgement's detail
// names ("replied YES to SM...").
func providerID(detail string) string {
	id, _ := strings.CutPrefix(detail, "replied YES to ")
	return id
}

// messageType is the event of a message reaching status s.
func messageType(s MessageStatus) EventType {
	switch s {
	case StatusSent:
		return TypeMessageSent
	case StatusDelivered:
		return TypeMessageDelivered
	case StatusFailed:
		return TypeMessageFailed
	case StatusExpired:
		return TypeMessageExpired
	case StatusSkipped:
		return TypeMessageSkipped
	case StatusSuppressed:
		return TypeMessageSuppressed
	case StatusOutcomeUnknown:
		return TypeMessageUnknown
	}
	return ""
}

// InboxNotices are the events of inbox item: it arrived (sequence 1); it
// opted its number out of texts (2) or back in (3); it was resolved (4).
// Each happens at most once, so each has an id of its own kind.
func InboxNotices(item *InboxItem) []Notice {
	type happening struct {
		typ  EventType
		name string
		at   *time.Time
	}
	var resolved *time.Time
	if item.Status == InboxResolved {
		resolved = item.ResolvedAt
	}
	var notices []Notice
	for i, h := range []happening{
		{TypeInboxItemCreated, "created", &item.ReceivedAt},
		{TypePatientOptedOut, "opted_out", item.OptedOutAt},
		{TypePatientOptedIn, "opted_in", item.OptedInAt},
		{TypeInboxItemResolved, "resolved", resolved},
	} {
		if h.at == nil {
			continue
		}
		d := NoticeData{BookingID: item.BookingID, InboxID: item.ID, Sequence: i + 1, Kind: item.Kind, Urgency: item.Urgency,
			Keyword: item.Keyword, Step: item.Step, Channel: item.Channel}
		switch h.typ {
		case TypePatientOptedOut, TypePatientOptedIn:
			d.Channel, d.Step = SMS, ""
		case TypeInboxItemResolved:
			d.Status = string(InboxResolved)
		}
		notices = append(notices, Notice{ID: "ev_" + item.ID + "_" + h.name, Type: h.typ, Timestamp: h.at.UTC(), Data: d})
	}
	return notices
}

// The task contract of webhook deliveries (see the note on the send
// tasks'): one task per event and endpoint, on its own queue, served by
// its own workers so a slow receiver never holds up a patient's text.
const (
	TypeWebhook   = "aftercare:webhook"
	QueueWebhooks = "webhooks"
)

// Delivery is the payload of a webhook task: the event's id and body, and
// the name of the endpoint it goes to. It carries no patient data: a
// Notice has none.
type Delivery struct {
	Endpoint string          `json:"endpoint"`
	EventID  string          `json:"event_id"`
	Body     json.RawMessage `json:"body"`
}

// TaskID is the delivery's task id: Redis refuses a second copy while the
// first is kept.
func (d Delivery) TaskID() string { return "webhook:" + d.EventID + ":" + d.Endpoint }

// Payload encodes the delivery as a task payload.
func (d Delivery) Payload() []byte {
	b, _ := json.Marshal(d) // cannot fail: strings and JSON
	return b
}

// ParseDelivery decodes a webhook task's payload.
func ParseDelivery(payload []byte) (Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(payload, &d); err != nil {
		return d, fmt.Errorf("decode webhook payload: %w", err)
	}
	if d.Endpoint == "" || d.EventID == "" || len(d.Body) == 0 {
		return d, errors.New("webhook payload is incomplete")
	}
	return d, nil
}

// EndpointState is an event endpoint as operators see it: where it is, what
// it takes, and whether a receiver turned it off (410 Gone), when and why.
type EndpointState struct {
	Name       string      `json:"name"`
	URL        string      `json:"url"`
	Types      []EventType `json:"types,omitempty"`
	Disabled   bool        `json:"disabled"`
	DisabledAt *time.Time  `json:"disabled_at,omitempty"`
	Reason     string      `json:"reason,omitempty"`
}

// Pending names a booking or an inbox item whose events wait to be handed
// to the webhook queue, under the lease of the relay that took it.
type Pending struct {
	BookingID, ItemID string
	Lease             string
}

// RetryAfter is the error of a run that failed and must not be tried again
// before At (a receiver's Retry-After). It counts as a failure.
type RetryAfter struct {
	At  time.Time
	Err error
}

func (r *RetryAfter) Error() string {
	return fmt.Sprintf("%v; again after %s", r.Err, r.At.Format(time.RFC3339))
}

func (r *RetryAfter) Unwrap() error { return r.Err }
