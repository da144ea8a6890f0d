package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/smtp"
)

// msgKey names one message of one booking.
type msgKey struct {
	booking, step string
	channel       aftercare.Channel
}

func (k msgKey) String() string { return k.booking + ":" + k.step + ":" + string(k.channel) }

// matchReceived counts how often each message reached its provider: a text
// by its number and body (rendered again, with and without the opt-out line
// of a booking's first text), an email by its Message-ID. unmatched counts
// what the providers received that belongs to no message.
func matchReceived(recs []*aftercare.Record, r *messages.Renderer, texts []twiliotest.Message, emails []smtptest.Message) (map[msgKey]int, int, error) {
	_, domain, _ := strings.Cut(from, "@")
	bySMS := map[[2]string]msgKey{}
	byMessageID := map[string]msgKey{}
	for _, rec := range recs {
		for _, m := range rec.Messages {
			k := msgKey{rec.ID, m.Step, m.Channel}
			if m.Channel == aftercare.Email {
				byMessageID["<"+smtp.MessageID(m.Ref(rec.ID, rec.Version).TaskID(), domain)+">"] = k
				continue
			}
			for _, first := range []bool{true, false} {
				out, err := r.Render(rec, m.Step, m.Channel, first)
				if err != nil {
					return nil, 0, err
				}
				bySMS[[2]string{rec.Booking.Patient.Phone, out.Text}] = k
			}
		}
	}
	received := map[msgKey]int{}
	unmatched := 0
	for _, t := range texts {
		if k, ok := bySMS[[2]string{t.To, t.Body}]; ok {
			received[k]++
		} else {
			unmatched++
		}
	}
	for _, e := range emails {
		h, err := e.Header()
		if err != nil {
			return nil, 0, err
		}
		if k, ok := byMessageID[h.Get("Message-ID")]; ok {
			received[k]++
		} else {
			unmatched++
		}
	}
	return received, unmatched, nil
}

// Tally is the outcome of a run, message by message.
type Tally struct {
	// Due counts the messages due by the end of the window; SentOnce those
	// recorded sent (or delivered) and received exactly once; NotDue the
	// rest, still scheduled.
	Due, SentOnce, NotDue int
	// Ended counts the other final statuses ("expired", "outcome_unknown",
	// ...).
	Ended map[aftercare.MessageStatus]int
	// ReceivedUnknown counts the outcome-unknown messages the provider did
	// get (each at most once).
	ReceivedUnknown int
	// InDoubt counts the texts whose outcome was in doubt (Twilio did not
	// answer, or a worker died sending them); Resolved those of them settled
	// by asking Twilio: found there, or sent once it was clear Twilio never
	// had them.
	InDoubt, Resolved int
	// Duplicates were received more than once; Lost never reached a final
	// status, or were recorded sent and never received; Unmatched were
	// received for no message.
	Duplicates, Lost, Unmatched int
	// Violations lists every problem, message by message.
	Violations []string
}

// tally checks each message of recs against how often its provider
// received it. A message due by cutoff must have been received exactly once
// and be recorded sent, or end failed, expired, skipped or suppressed with
// its reason and not received, or end outcome unknown (received at most
// once). Anything a provider received that matches no message is a problem
// too. A message not due yet must still be scheduled and not received.
func tally(recs []*aftercare.Record, cutoff time.Time, received map[msgKey]int, unmatched int) Tally {
	t := Tally{Ended: map[aftercare.MessageStatus]int{}, Unmatched: unmatched}
	if unmatched > 0 {
		t.Violations = append(t.Violations, fmt.Sprintf("%d messages the providers received belong to no booking's message", unmatched))
	}
	bad := func(k msgKey, format string, args ...any) {
		t.Violations = append(t.Violations, k.String()+": "+fmt.Sprintf(format, args...))
	}
	for _, rec := range recs {
		for _, m := range rec.Messages {
			k := msgKey{rec.ID, m.Step, m.Channel}
			n := received[k]
			if m.SendAt.After(cutoff) {
				t.NotDue++
				if m.Status != aftercare.StatusScheduled || n > 0 {
					bad(k, "not due until %s, yet %s and received %d times", m.SendAt.Format(time.TimeOnly), m.Status, n)
				}
				continue
			}
			t.Due++
			if m.Channel == aftercare.SMS && inDoubt(rec, m) {
				t.InDoubt++
				if m.Status == aftercare.StatusSent || m.Status == aftercare.StatusDelivered {
					t.Resolved++
				}
			}
			reason := m.Error
			if reason == "" {
				reason = m.Note
			}
			switch {
			case n > 1:
				t.Duplicates++
				bad(k, "received %d times (%s)", n, m.Status)
			case !m.Status.Final():
				t.Lost++
				bad(k, "no final status: still %s (%s), received %d times", m.Status, reason, n)
			case m.Status == aftercare.StatusSent || m.Status == aftercare.StatusDelivered:
				if n == 1 {
					t.SentOnce++
				} else {
					t.Lost++
					bad(k, "recorded %s but never received", m.Status)
				}
			case reason == "":
				bad(k, "%s with no reason recorded", m.Status)
			case m.Status == aftercare.StatusOutcomeUnknown:
				t.Ended[m.Status]++
				t.ReceivedUnknown += n
			case n == 1:
				bad(k, "received, but recorded %s (%s)", m.Status, reason)
			default:
				t.Ended[m.Status]++
			}
		}
	}
	return t
}

// inDoubt reports whether the history of rec shows message m in doubt:
// left sending without an answer, then asked about.
func inDoubt(rec *aftercare.Record, m aftercare.Message) bool {
	return slices.ContainsFunc(rec.History, func(a aftercare.Event) bool {
		return a.Step == m.Step && a.Channel == m.Channel && (a.Outcome == aftercare.OutcomeInDoubt || a.Asked)
	}) || m.Status == aftercare.StatusOutcomeUnknown
}

// Print writes the faults and the tally.
func (r Report) Print(w io.Writer) error {
	var made []string
	for _, name := range FaultNames() {
		made = append(made, fmt.Sprintf("%s %d", name, r.Faults[name]))
	}
	fmt.Fprintf(w, "aftercare chaos: seed %d, %d bookings, %d workers, window %s\nfaults: %s\n\n",
		r.Config.Seed, r.Config.Bookings, r.Config.Workers, r.Config.Window, strings.Join(made, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "messages due\t%d\n", r.Due)
	fmt.Fprintf(tw, "  sent, received exactly once\t%d\n", r.SentOnce)
	for _, st := range slices.Sorted(maps.Keys(r.Ended)) {
		line := fmt.Sprintf("  %s\t%d", st, r.Ended[st])
		if st == aftercare.StatusOutcomeUnknown {
			line += fmt.Sprintf("\t(the provider got %d of them, each once)", r.ReceivedUnknown)
		}
		fmt.Fprintln(tw, line)
	}
	fmt.Fprintf(tw, "  texts in doubt (no answer, or a worker killed)\t%d\t(%d settled by asking Twilio)\n", r.InDoubt, r.Resolved)
	fmt.Fprintf(tw, "  received more than once\t%d\n", r.Duplicates)
	fmt.Fprintf(tw, "  lost: no final status, or recorded sent and never received\t%d\n", r.Lost)
	fmt.Fprintf(tw, "not due yet, still scheduled\t%d\n", r.NotDue)
	fmt.Fprintf(tw, "received by a provider for no message\t%d\n", r.Unmatched)
	fmt.Fprintf(tw, "events the bookings' changes call for\t%d\n", r.Events.Expected)
	fmt.Fprintf(tw, "  delivered, signature verified\t%d\t(%d more than once, %d first tries refused on purpose)\n",
		r.Events.Delivered, r.Events.Twice, r.Events.Refused)
	fmt.Fprintf(tw, "  lost\t%d\n", r.Events.Lost)
	var peaks []string
	for _, n := range slices.Sorted(maps.Keys(r.PeakRSS)) {
		peaks = append(peaks, fmt.Sprintf("worker %d: %d kB", n, r.PeakRSS[n]))
	}
	fmt.Fprintf(tw, "peak RSS of the workers running at the end\t%s\n", strings.Join(peaks, ", "))
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.OK() {
		_, err := fmt.Fprintln(w, "\nOK: every due message went out exactly once or ended with its reason; none twice; every event delivered.")
		return err
	}
	fmt.Fprintf(w, "\nFAILED: %d problems\n", len(r.Violations))
	for _, v := range r.Violations[:min(len(r.Violations), 20)] {
		fmt.Fprintln(w, "  "+v)
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "Redis data and worker logs are kept in %s\n", r.Dir)
	}
	return nil
}
