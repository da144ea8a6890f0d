package aftercare

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBookingNotice: which trail entry makes which event, and which make
// none.
func TestBookingNotice(t *testing.T) {
	at := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	created := at.Add(-time.Hour)
	cases := []struct {
		e        Event
		typ      EventType
		status   string
		code, id string
	}{
		{Event{Kind: EventBooked, By: "clinic"}, TypeBookingScheduled, "", "", ""},
		{Event{Kind: EventRescheduled}, TypeBookingRescheduled, "", "", ""},
		{Event{Kind: EventCancelled}, TypeBookingCancelled, "", "", ""},
		{Event{Kind: EventTreated}, TypeBookingTreated, "", "", ""},
		{Event{Kind: EventStopped}, TypeAftercareStopped, "", "", ""},
		{Event{Kind: EventAcknowledged, Step: "consent", Channel: SMS, Detail: "replied YES to SM123"}, TypeConsentAcknowledged, "", "", "SM123"},
		{Event{Kind: EventAcknowledged, Step: "consent", Detail: "on the consent page: sha256:ab"}, TypeConsentAcknowledged, "", "", ""},
		{Event{Kind: EventResend, Step: "consent", Channel: SMS, By: "Dr Jane Roe"}, TypeMessageScheduled, "scheduled", "", ""},
		{Event{Kind: EventFallback, Step: "upright", Channel: Email}, TypeMessageScheduled, "scheduled", "", ""},
		{Event{Kind: EventSend, Step: "consent", Channel: SMS, Outcome: OutcomeSent, Detail: "SM1"}, TypeMessageSent, "sent", "", "SM1"},
		{Event{Kind: EventSend, Outcome: OutcomeSent, Status: StatusSent, Detail: "SM2 (found at the provider)"}, TypeMessageSent, "sent", "", "SM2"},
		// What the store says the run did wins over what the run meant to
		// do: a retry that met a changed booking failed the message; a run
		// that found it changed already did nothing.
		{Event{Kind: EventSend, Outcome: OutcomeRetry, Status: StatusFailed, Detail: "twilio:20500; not retried because the booking changed meanwhile"}, TypeMessageFailed, "failed", "twilio:20500", ""},
		{Event{Kind: EventSend, Outcome: OutcomeExpired, Unchanged: true}, "", "", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeFailed, Detail: "twilio:21211: invalid number +15555550123"}, TypeMessageFailed, "failed", "twilio:21211", ""},
		{Event{Kind: EventSend, Outcome: OutcomeUnknown, Detail: "smtp:no-answer"}, TypeMessageUnknown, "outcome_unknown", "smtp:no-answer", ""},
		{Event{Kind: EventSend, Outcome: OutcomeExpired}, TypeMessageExpired, "expired", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeSkipped}, TypeMessageSkipped, "skipped", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeSuppressed}, TypeMessageSuppressed, "suppressed", "", ""},
		{Event{Kind: EventReceipt, Status: StatusDelivered}, TypeMessageDelivered, "delivered", "", ""},
		{Event{Kind: EventReceipt, Status: StatusFailed, Detail: "failed: twilio:30003"}, TypeMessageFailed, "failed", "twilio:30003", ""},
		{Event{Kind: EventExpired, Status: StatusExpired}, TypeMessageExpired, "expired", "", ""},
		{Event{Kind: EventSkipped, Status: StatusSkipped}, TypeMessageSkipped, "skipped", "", ""},
		{Event{Kind: EventSuppressed, Status: StatusSuppressed, By: "patient"}, TypeMessageSuppressed, "suppressed", "", ""},
		// None: runs that leave the message as it was, a text (the inbox
		// tells of it), and entries written before each had a status.
		{Event{Kind: EventSend, Outcome: OutcomeRetry}, "", "", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeDeferred}, "", "", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeRateLimited}, "", "", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeDropped}, "", "", "", ""},
		{Event{Kind: EventSend, Outcome: OutcomeInDoubt}, "", "", "", ""},
		{Event{Kind: EventReply}, "", "", "", ""},
		{Event{Kind: EventSuppressed}, "", "", "", ""},
	}
	for i, c := range cases {
		c.e.At = at
		n, ok := BookingNotice("bk_1", created, i+1, c.e)
		if ok != (c.typ != "") || n.Type != c.typ {
			t.Errorf("%s/%s: %q, %v; want %q", c.e.Kind, c.e.Outcome, n.Type, ok, c.typ)
			continue
		}
		if !ok {
			continue
		}
		if n.Data.Status != c.status || n.Data.ErrorCode != c.code || n.Data.ProviderID != c.id || n.Data.Sequence != i+1 {
			t.Errorf("%s/%s data %+v, want status %q, code %q, provider id %q", c.e.Kind, c.e.Outcome, n.Data, c.status, c.code, c.id)
		}
		if n.Type == TypeConsentAcknowledged && n.Data.Method != map[bool]string{true: AckBySMS, false: AckByPage}[c.e.Channel == SMS] {
			t.Errorf("acknowledged by %q on channel %q", n.Data.Method, c.e.Channel)
		}
		if strings.Contains(string(n.Body()), "5555550123") || strings.Contains(string(n.Body()), "Jane") {
			t.Errorf("%s body carries the number: %s", n.Type, n.Body())
		}
	}
	a, _ := BookingNotice("bk_1", created, 1, Event{Kind: EventBooked, At: at})
	b, _ := BookingNotice("bk_1", created.Add(40*24*time.Hour), 1, Event{Kind: EventBooked, At: at})
	if a.ID == b.ID {
		t.Errorf("a later booking with the same id has the same event id %s", a.ID)
	}
}

// TestInboxNotices: an item's events, each with an id of its own kind
// that stays the same whatever happens later.
func TestInboxNotices(t *testing.T) {
	at := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	item := &InboxItem{ID: "in_1796000000000abcdefgh", Kind: InboxReply, Status: InboxOpen, Urgency: Normal, ReceivedAt: at,
		From: "+15555550123", Text: "please stop", Keyword: KeywordStop, BookingID: "bk_1"}
	item.OptedOutAt = &at
	ids := func() []string {
		var out []string
		for _, n := range InboxNotices(item) {
			if strings.Contains(string(n.Body()), "please") || strings.Contains(string(n.Body()), "5555550123") {
				t.Errorf("%s carries the text or the number: %s", n.Type, n.Body())
			}
			out = append(out, fmt.Sprintf("%s %s %d", n.ID, n.Type, n.Data.Sequence))
		}
		return out
	}
	want := []string{"ev_in_1796000000000abcdefgh_created inbox.item_created 1", "ev_in_1796000000000abcdefgh_opted_out patient.opted_out 2"}
	if got := ids(); !slices.Equal(got, want) {
		t.Errorf("open STOP item: %v, want %v", got, want)
	}
	// Resolved before staff's opt-out was stored, with an earlier time:
	// the ids do not move.
	resolved := at.Add(-time.Minute)
	item.Status, item.ResolvedAt = InboxResolved, &resolved
	want = append(want, "ev_in_1796000000000abcdefgh_resolved inbox.item_resolved 4")
	if got := ids(); !slices.Equal(got, want) {
		t.Errorf("resolved: %v, want %v", got, want)
	}
}
