package chaos

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/aftercare/aftercare"
)

// eventSecret signs the run's events.
var eventSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("chaos-run-event-signing-secret!!"))

// refuseEvery: the receiver answers 500 to every refuseEvery-th first
// delivery of an event, so retries are part of the run.
const refuseEvery = 20

// receiver is the clinic's system in a run: it checks each event's
// signature with the specification's library and counts what it took by
// webhook-id.
type receiver struct {
	srv *httptest.Server
	wh  *standardwebhooks.Webhook

	mu       sync.Mutex
	taken    map[string]int
	firsts   int
	refused  int
	unsigned int
}

func newReceiver() (*receiver, error) {
	wh, err := standardwebhooks.NewWebhook(eventSecret)
	if err != nil {
		return nil, err
	}
	r := &receiver{wh: wh, taken: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	return r, nil
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.mu.Lock()
		r.unsigned++
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.taken[id]; !seen {
		r.firsts++
		if r.firsts%refuseEvery == 0 {
			r.taken[id] = 0 // seen, not taken: the retry is the first taken
			r.refused++
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	}
	r.taken[id]++
}

func (r *receiver) close() { r.srv.Close() }

// Events is what happened to the run's events.
type Events struct {
	// Expected counts the events the bookings' audit trails call for;
	// Delivered those the receiver took, Twice those it took more than once
	// (allowed: delivery is at least once), Lost those it never took.
	Expected, Delivered, Twice, Lost int
	// Refused counts the deliveries the receiver answered 500 on purpose;
	// Unsigned those whose signature did not verify.
	Refused, Unsigned int
}

// expectedEvents returns the ids of the events recs' trails call for.
func expectedEvents(recs []*aftercare.Record) map[string]aftercare.EventType {
	want := map[string]aftercare.EventType{}
	for _, rec := range recs {
		for i, e := range rec.History {
			if n, ok := aftercare.BookingNotice(rec.ID, rec.CreatedAt, i+1, e); ok {
				want[n.ID] = n.Type
			}
		}
	}
	return want
}

// count compares what the receiver took with want.
func (r *receiver) count(want map[string]aftercare.EventType) (Events, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Events{Expected: len(want), Refused: r.refused, Unsigned: r.unsigned}
	var lost []string
	for id, typ := range want {
		switch n := r.taken[id]; {
		case n == 0:
			ev.Lost++
			lost = append(lost, id+" ("+string(typ)+") never delivered")
		case n > 1:
			ev.Twice++
			fallthrough
		default:
			ev.Delivered++
		}
	}
	return ev, lost
}

// eventsWait is the least a run waits for its events: a delivery that
// failed twice (a first try refused on purpose, and one that met Redis
// restarting) waits 5 minutes, the schedule's second step, for its third.
const eventsWait = 6 * time.Minute

// waitEvents waits, up to Settle or eventsWait if longer, until the
// receiver has taken every event recs call for, and counts them.
func (c *run) waitEvents(ctx context.Context, recs []*aftercare.Record) (Events, []string, error) {
	want := expectedEvents(recs)
	wait := max(c.Settle, eventsWait)
	c.logf("waiting up to %s for the %d events of the bookings' changes", wait, len(want))
	deadline := time.Now().Add(wait)
	lastLog := time.Now()
	for {
		ev, lost := c.receiver.count(want)
		if ev.Lost == 0 || time.Now().After(deadline) {
			if ev.Unsigned > 0 {
				lost = append(lost, fmt.Sprintf("%d deliveries with a signature that does not verify", ev.Unsigned))
			}
			return ev, lost, nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			c.logf("%d events not delivered yet (retries, up to 5 minutes after a second failure, or leases of killed workers running out)", ev.Lost)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return Events{}, nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
