package aftercare

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// InboxItem is something a person at the clinic must look at, or has: a
// patient's text, with what aftercare understood of it, did about it and
// answered. Every inbound text becomes one; those that need nobody (a STOP,
// a plain YES) are resolved as they arrive.
type InboxItem struct {
	ID     string      `json:"id"`
	Kind   InboxKind   `json:"kind"`
	Status InboxStatus `json:"status"`
	// Urgency is urgent for a text naming a red flag.
	Urgency    Urgency   `json:"urgency"`
	ReceivedAt time.Time `json:"received_at"`
	// BookingID is the booking the text belongs to, if the number has one.
	BookingID string `json:"booking_id,omitempty"`
	// FirstName is the patient's, from that booking, for the person who
	// calls back.
	FirstName string `json:"first_name,omitempty"`
	// Step, Channel and MessageStatus name the message of a delivery item.
	Step          string        `json:"step,omitempty"`
	Channel       Channel       `json:"channel,omitempty"`
	MessageStatus MessageStatus `json:"message_status,omitempty"`
	// From is the number the text came from, and Text what it said (for a
	// delivery item, what happened).
	From string `json:"from"`
	Text string `json:"text"`
	// Keyword is what the text asked aftercare to do; Flags the red-flag
	// phrases it names.
	Keyword Keyword  `json:"keyword,omitempty"`
	Flags   []string `json:"flags,omitempty"`
	// Action says what aftercare did; Answer is the text it answered with.
	Action string `json:"action"`
	Answer string `json:"answer,omitempty"`
	// Alerts counts the alerts sent about the item; LastAlertAt is the
	// latest.
	Alerts      int        `json:"alerts"`
	LastAlertAt *time.Time `json:"last_alert_at,omitempty"`
	// ResolvedAt, ResolvedBy and Note say who took the item, when, and what
	// they did.
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy string     `json:"resolved_by,omitempty"`
	Note       string     `json:"note,omitempty"`
	// OptedOutAt and OptedInAt are when the item opted its number out of
	// texts (a STOP, or staff who read one) or back in (a START).
	OptedOutAt *time.Time `json:"opted_out_at,omitempty"`
	OptedInAt  *time.Time `json:"opted_in_at,omitempty"`
	// ProviderID is the provider's id of the text (a Twilio MessageSid): a
	// text delivered twice is one item.
	ProviderID string `json:"provider_id,omitempty"`
}

// InboxKind is what an inbox item is about.
type InboxKind string

// Inbox kinds.
const (
	InboxReply    InboxKind = "reply"    // a patient's text
	InboxDelivery InboxKind = "delivery" // a message that may not have reached the patient
)

// Problem is a message that ended without reaching the patient, or may
// have: a person at the clinic must know.
type Problem struct {
	Ref    MessageRef
	Status MessageStatus
	Reason string
	At     time.Time
	// Clinical marks a step that matters to the patient's safety.
	Clinical bool
}

// InboxStatus is whether an item still waits for a person.
type InboxStatus string

// Inbox statuses.
const (
	InboxOpen     InboxStatus = "open"
	InboxResolved InboxStatus = "resolved"
)

// Urgency orders the inbox: urgent items first, and alerted again until
// someone resolves them.
type Urgency string

// Urgencies.
const (
	Urgent Urgency = "urgent"
	Normal Urgency = "normal"
)

// NewInboxID returns a new inbox item id: "in_", the time in milliseconds
// (so ids sort by arrival) and a random part.
func NewInboxID(at time.Time) string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	return fmt.Sprintf("in_%013d%s", at.UnixMilli(), strings.ToLower(base32.StdEncoding.EncodeToString(b[:])))
}

// ValidInboxID reports whether id has the form NewInboxID makes.
func ValidInboxID(id string) bool {
	if len(id) != 3+13+8 || !strings.HasPrefix(id, "in_") {
		return false
	}
	for _, r := range id[3:] {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'z') {
			return false
		}
	}
	return true
}

// InboxIDTime is when the item id was made, or zero for an id NewInboxID
// did not make.
func InboxIDTime(id string) time.Time {
	if !ValidInboxID(id) {
		return time.Time{}
	}
	ms, err := strconv.ParseInt(id[3:16], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// InboxFilter picks inbox items; empty fields pick all.
type InboxFilter struct {
	Status  InboxStatus
	Urgency Urgency
}

// Match reports whether item passes f.
func (f InboxFilter) Match(item *InboxItem) bool {
	return (f.Status == "" || item.Status == f.Status) && (f.Urgency == "" || item.Urgency == f.Urgency)
}

// Kinds of answer to a patient's text, each a template (reply.KIND.sms.tmpl).
const (
	AnswerUrgent = "urgent" // a red flag: call the emergency number if ..., the team will call
	AnswerOpen   = "open"   // received; the team answers within the clinic's time
	AnswerClosed = "closed" // received; when the team reads messages again
	AnswerStop   = "stop"   // the patient asked for no more texts in their own words
)

// Answers lists the kinds of answer.
func Answers() []string { return []string{AnswerUrgent, AnswerOpen, AnswerClosed, AnswerStop} }

// InboxStats is the state of the inbox for the metrics.
type InboxStats struct {
	OpenUrgent, OpenNormal int
	// OldestUrgent is when the oldest open urgent item arrived; zero if
	// there is none.
	OldestUrgent time.Time
}
