package aftercare

import (
	"fmt"
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
		{Event{Kind: EventAcknowledged, Step: "consent", Detail: "replied YES to SM123"}, TypeConsentAcknowledged, "", "", "SM123"},
		{Event{Kind: EventResend, Step: "consent", Channel: SMS, By: "Dr Jane Roe"}, TypeMessageScheduled, "scheduled", "", ""},
		{Event{Kind: EventFallback, Step: "upright", Channel: Email}, TypeMessageScheduled, "scheduled", "", ""},
		{Event{Kind: EventSend, Step: "consent", Channel: SMS, Outcome: OutcomeSent, Detail: "SM1"}, TypeMessageSent, "sent", "", "SM1"},
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

// TestInboxNotices: an item's events, numbered in the order they
// happened; later ones only extend the list.
func TestInboxNotices(t *testing.T) {
	at := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	item := &InboxItem{ID: "in_1796000000000abcdefgh", Kind: InboxReply, Status: InboxOpen, Urgency: Normal, ReceivedAt: at,
		From: "+15555550123", Text: "please stop", Keyword: KeywordStop, BookingID: "bk_1"}
	item.OptedOutAt = &at
	types := func() []EventType {
		var out []EventType
		for i, n := range InboxNotices(item) {
			if n.Data.Sequence != i+1 || n.ID != fmt.Sprintf("ev_%s_%d", item.ID, i+1) {
				t.Errorf("notice %d: sequence %d, id %s", i, n.Data.Sequence, n.ID)
			}
			if strings.Contains(string(n.Body()), "please") || strings.Contains(string(n.Body()), "5555550123") {
				t.Errorf("%s carries the text or the number: %s", n.Type, n.Body())
			}
			out = append(out, n.Type)
		}
		return out
	}
	if got := types(); len(got) != 2 || got[1] != TypePatientOptedOut {
		t.Errorf("open STOP item: %v", got)
	}
	resolved := at.Add(time.Hour)
	item.Status, item.ResolvedAt = InboxResolved, &resolved
	if got := types(); len(got) != 3 || got[2] != TypeInboxItemResolved {
		t.Errorf("resolved: %v", got)
	}
}
