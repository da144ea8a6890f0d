package aftercare

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
)

// Channel is a way to reach a patient.
type Channel string

// Channels, in the order a step lists them by default.
const (
	SMS   Channel = "sms"
	Email Channel = "email"
)

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool { return c == SMS || c == Email }

// MessageStatus is where one planned message stands.
type MessageStatus string

// Message statuses. A message starts scheduled (or is dropped at plan time as
// expired or skipped); the worker moves it to sending and then to sent,
// failed or outcome unknown. Delivery receipts move sent to delivered or
// failed. CanBecome lists every change a message may make.
const (
	StatusScheduled  MessageStatus = "scheduled"
	StatusSending    MessageStatus = "sending"
	StatusSent       MessageStatus = "sent"
	StatusDelivered  MessageStatus = "delivered"
	StatusFailed     MessageStatus = "failed"
	StatusExpired    MessageStatus = "expired"
	StatusSkipped    MessageStatus = "skipped"
	StatusSuppressed MessageStatus = "suppressed"
	StatusCancelled  MessageStatus = "cancelled"
	// StatusOutcomeUnknown: the provider may have taken the message (a
	// worker died while sending it, or the provider never answered), so it
	// is not sent again; a person at the clinic has to find out.
	StatusOutcomeUnknown MessageStatus = "outcome_unknown"
)

// Final reports whether nothing more will happen to a message in status s.
func (s MessageStatus) Final() bool {
	return s != StatusScheduled && s != StatusSending
}

// Happened reports whether a message in status s went out, or may have:
// it is being sent, was sent or delivered, or its outcome is unknown. Such a
// message is never sent again.
func (s MessageStatus) Happened() bool {
	switch s {
	case StatusSending, StatusSent, StatusDelivered, StatusOutcomeUnknown:
		return true
	}
	return false
}

// transitions lists, for each status, the statuses a message in it may
// move to. A scheduled message is claimed (sending), or dropped before it
// goes; a message being sent ends (expired, when its deadline comes before
// a retry could), or goes back to scheduled for a retry (cancelled or
// failed instead if its booking changed meanwhile, see MessageRef.Change);
// a receipt moves a sent message on.
var transitions = map[MessageStatus][]MessageStatus{
	StatusScheduled: {StatusSending, StatusExpired, StatusSkipped, StatusSuppressed, StatusCancelled},
	StatusSending: {StatusSent, StatusFailed, StatusOutcomeUnknown, StatusSuppressed,
		StatusExpired, StatusScheduled, StatusCancelled},
	StatusSent: {StatusDelivered, StatusFailed},
}

// CanBecome reports whether a message in status s may move to status to.
func (s MessageStatus) CanBecome(to MessageStatus) bool {
	return slices.Contains(transitions[s], to)
}

// Message is one planned send of one step on one channel, with its state.
type Message struct {
	Step       string        `json:"step"`
	Channel    Channel       `json:"channel"`
	SendAt     time.Time     `json:"send_at"`
	Deadline   time.Time     `json:"deadline"`
	Status     MessageStatus `json:"status"`
	ProviderID string        `json:"provider_id"`
	Error      string        `json:"error"`
	// Note says why the message was moved or dropped when planned.
	Note string `json:"note,omitempty"`
	// Digest identifies the exact text sent (see Digest), once sent.
	Digest string `json:"digest,omitempty"`
	// ClaimedAt is when a run last claimed the message to send it.
	ClaimedAt time.Time `json:"-"`
}

// Digest names a rendered message's exact text: "sha256:" and the hex
// SHA-256 of its subject (for an email), a blank line, and its text. The
// record keeps it, so the clinic can later show what a patient received
// and agreed to without storing the words twice.
func Digest(out Outgoing) string {
	h := sha256.New()
	if out.Subject != "" {
		h.Write([]byte(out.Subject + "\n\n"))
	}
	h.Write([]byte(out.Text))
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Ref names m as the message of version of booking id.
func (m Message) Ref(id string, version int) MessageRef {
	return MessageRef{BookingID: id, Version: version, Step: m.Step, Channel: m.Channel}
}

// BookingStatus is where a booking as a whole stands.
type BookingStatus string

// Booking statuses. A booking is completed once none of its messages can
// change any more.
const (
	BookingScheduled BookingStatus = "scheduled"
	BookingCancelled BookingStatus = "cancelled"
	BookingCompleted BookingStatus = "completed"
)

// Timeline is a booking's plan and the state of each message: what the API
// returns for a booking. It holds no patient data.
type Timeline struct {
	ID       string        `json:"id"`
	Version  int           `json:"version"`
	Status   BookingStatus `json:"status"`
	Messages []Message     `json:"messages"`
	// ConsentAcknowledgedAt is when the patient acknowledged the consent
	// details; ConsentAcknowledgement says how, and what they answered.
	ConsentAcknowledgedAt  *time.Time       `json:"consent_acknowledged_at,omitempty"`
	ConsentAcknowledgement *Acknowledgement `json:"consent_acknowledgement,omitempty"`
	// Replies are the patient's texts about this booking; each is an item
	// of the clinic inbox.
	Replies []Reply `json:"replies,omitempty"`
	// History is the audit trail, oldest first: every send attempt, and
	// everything else that happened to the booking and its messages.
	History []Event `json:"history,omitempty"`
	// Warnings, in the answer to a new booking only, name the messages
	// that can no longer go because their time has passed.
	Warnings []string `json:"warnings,omitempty"`
}

// Event is an entry of a booking's audit trail: what happened, when, to
// which message (Step and Channel, if one), who did it or which provider
// event it was (By), and why or with what result (Outcome, Detail). It holds
// no patient data: an inbound text is named by its inbox item.
type Event struct {
	At time.Time `json:"at"`
	// Kind is what happened; entries written before kinds are sends.
	Kind    EventKind `json:"kind"`
	Step    string    `json:"step,omitempty"`
	Channel Channel   `json:"channel,omitempty"`
	// Number counts the runs of a send's task, from 1.
	Number  int     `json:"attempt,omitempty"`
	Outcome Outcome `json:"outcome,omitempty"`
	// Detail is the provider id of a send, or the reason, error code or
	// what changed.
	Detail string `json:"detail,omitempty"`
	// By is who asked (the API client, "patient", "clinic") or the provider
	// whose event it was ("twilio").
	By string `json:"by,omitempty"`
	// Asked: the run asked the provider about a text in doubt.
	Asked bool `json:"asked,omitempty"`
	// Status is the status the entry left its message in; Unchanged marks
	// a run that found its message changed already and left it (entries
	// written before either existed have neither: their Outcome says it).
	Status    MessageStatus `json:"status,omitempty"`
	Unchanged bool          `json:"unchanged,omitempty"`
}

// EventKind names what an audit trail entry records.
type EventKind string

// Event kinds.
const (
	EventSend         EventKind = "send"              // a run of a send task, whatever its outcome
	EventBooked       EventKind = "booked"            // the booking was made
	EventRescheduled  EventKind = "rescheduled"       // a new version replaced it
	EventTreated      EventKind = "treated"           // the clinic reported the end of treatment
	EventCancelled    EventKind = "cancelled"         // the booking was cancelled
	EventStopped      EventKind = "aftercare_stopped" // its aftercare was stopped on purpose
	EventResend       EventKind = "resend"            // a message was planned again on purpose
	EventReceipt      EventKind = "receipt"           // a delivery receipt changed a message
	EventFallback     EventKind = "fallback"          // a step's fallback was planned
	EventExpired      EventKind = "expired"           // a message was planned past its deadline
	EventSkipped      EventKind = "skipped"           // a message was planned to be left out
	EventSuppressed   EventKind = "suppressed"        // the patient replied STOP: a text will not go
	EventOptedIn      EventKind = "opted_in"          // the patient replied START
	EventReply        EventKind = "reply"             // the patient texted about the booking
	EventAcknowledged EventKind = "acknowledged"      // the patient acknowledged the consent
)

// Note adds e to the record's audit trail, its detail redacted (a reason
// typed by a person can quote a number or an address).
func (r *Record) Note(e Event) {
	e.Detail = Redact(e.Detail)
	r.History = append(r.History, e)
}

// Reply is a patient's text about a booking, by its inbox item. Replies
// kept before the inbox existed have their text here instead.
type Reply struct {
	At      time.Time `json:"at"`
	InboxID string    `json:"inbox_id,omitempty"`
	Urgency Urgency   `json:"urgency,omitempty"`
	Text    string    `json:"text,omitempty"`
}

// Acknowledgement records that a patient acknowledged the consent details:
// when, how, and which text. It identifies no one; what does is kept
// apart, in ConsentEvidence.
type Acknowledgement struct {
	At time.Time `json:"at"`
	// Method is how: AckByPage or AckBySMS.
	Method string `json:"method"`
	// Digest is the SHA-256 of the text acknowledged: the consent page as
	// shown, or the consent SMS as sent.
	Digest string `json:"digest,omitempty"`
	// ProviderID names the consent SMS a YES answered.
	ProviderID string `json:"provider_id,omitempty"`
	// On the page: the treatment, the version of its protocol and of the
	// page's template, and the language of the text shown.
	Treatment       string `json:"treatment,omitempty"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	TemplateVersion string `json:"template_version,omitempty"`
	Locale          string `json:"locale,omitempty"`
}

// Acknowledgement methods. A YES by SMS is valid but weaker than the page,
// where the patient read the whole text and signed with their name; a page
// acknowledgement replaces an earlier YES.
const (
	AckByPage = "page"      // ticked and signed on the consent page
	AckBySMS  = "sms_reply" // replied YES to the consent text
)

// ConsentEvidence is what the consent page keeps beside an
// acknowledgement to stand behind it: who signed, from where, and the exact
// text shown. It is patient data: stored encrypted with the booking, given
// to the clinic's export, never in the timeline.
type ConsentEvidence struct {
	// Name is the full name the patient typed.
	Name      string `json:"name"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	// Text is the text shown, whose digest the acknowledgement holds.
	Text string `json:"text"`
	// Fingerprint is the booking's fingerprint when the page was signed:
	// the details signed for. The link made from it, retired for signing
	// when the booking changes, still opens the receipt.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// ConsentRecord is a booking's acknowledgement with its evidence, as a
// clinic exports it for its own records.
type ConsentRecord struct {
	BookingID string `json:"booking_id"`
	Acknowledgement
	Evidence *ConsentEvidence `json:"evidence,omitempty"`
}

// InboundText is a text a patient sent, as the provider hands it over.
type InboundText struct {
	// ProviderID is the provider's id of the text (a Twilio MessageSid).
	ProviderID string
	From, Body string
	ReceivedAt time.Time
}

// Receipt is a provider's report on a message it took, in aftercare's
// terms: the provider adapter or webhook handler translates its own words.
type Receipt struct {
	// Key identifies the report; a report seen before changes nothing.
	Key string
	// ProviderID is the provider's id of the message (a Twilio SID).
	ProviderID string
	// Status is StatusDelivered or StatusFailed; a receipt with any other
	// status changes nothing.
	Status MessageStatus
	// Reason says why delivery failed, with the provider's code
	// ("twilio:30003: carrier undelivered").
	Reason string
}

// Record is everything stored for a booking: the booking itself (with the
// patient's contact details), the fingerprint of the request that created it,
// and its timeline.
type Record struct {
	Booking     Booking
	Fingerprint string
	CreatedAt   time.Time
	Timeline
	// Evidence backs a consent acknowledged on the page.
	Evidence *ConsentEvidence
}

// Message returns the planned message for step on channel, if any.
func (t *Timeline) Message(step string, ch Channel) (Message, bool) {
	for _, m := range t.Messages {
		if m.Step == step && m.Channel == ch {
			return m, true
		}
	}
	return Message{}, false
}

// Drop gives every scheduled message on channel ch (on any channel if ch
// is empty) the final status to, with reason as its error, and reports
// whether there was any.
func (r *Record) Drop(ch Channel, to MessageStatus, reason string) bool {
	dropped := false
	for i, m := range r.Messages {
		if m.Status == StatusScheduled && (ch == "" || m.Channel == ch) {
			r.Messages[i].Status, r.Messages[i].Error = to, reason
			dropped = true
		}
	}
	return dropped
}

// Outgoing is a rendered message ready for a Sender. ID is stable across
// retries of the same message (the task id), so providers and mail clients
// can recognise a repeat.
type Outgoing struct {
	ID      string
	Channel Channel
	// Locale is the language the message is written in.
	Locale  string
	To      string
	Subject string
	Text    string
	HTML    string
}
