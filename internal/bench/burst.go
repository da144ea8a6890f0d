package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// Burst is how a clinic's 10 o'clock went: routine texts all due in the
// same second behind the SMS rate limit, and clinical texts due over the
// window (a minute) that follows.
type Burst struct {
	Routine, Clinical int
	Window            time.Duration
	// Limit is SMS_RATE_LIMIT; Rate what the routine texts achieved, from
	// the first to the last, in texts per second.
	Limit, Rate float64
	// Lateness is provider call minus due time.
	RoutineP50, RoutineP99, RoutineMax    time.Duration
	ClinicalP50, ClinicalP99, ClinicalMax time.Duration
	// PastDeadline counts texts that reached the provider after their
	// deadline (none may).
	PastDeadline int
	// RSS is the bench process's resident set, in KiB, when a tenth of the
	// routine texts had gone and when the last had; Heap its live heap then,
	// after a collection, less the texts the fake Twilio keeps (in KiB):
	// what the worker and the harness hold.
	RSSEarly, RSSLate, HeapEarly, HeapLate int64
}

// burstProtocols are the built-in protocols cut down to the two kinds of
// text of a burst: botox's "stay upright" (clinical priority, at the end of
// treatment) and filler's day-14 text (routine, moved to the end of
// treatment as well, so that both fall due when the bench says).
func (b *bench) burstProtocols() (map[string]aftercare.Protocol, error) {
	botox, filler := b.protocols["botox"], b.protocols["filler"]
	upright, ok1 := botox.Step("upright")
	day14, ok2 := filler.Step("day14")
	if !ok1 || !ok2 || upright.Priority != aftercare.PriorityClinical {
		return nil, fmt.Errorf("burst: the built-in protocols lack a clinical upright step or a day14 step")
	}
	day14.When = aftercare.TimeRule{Anchor: aftercare.AnchorTreatmentEnd}
	day14.Channels, day14.Fallback = []aftercare.Channel{aftercare.SMS}, ""
	upright.Fallback = ""
	botox.Steps, filler.Steps = []aftercare.Step{upright}, []aftercare.Step{day14}
	return map[string]aftercare.Protocol{"botox": botox, "filler": filler}, nil
}

// burst books b.Burst routine texts due in the same second and
// b.BurstClinical clinical texts due one by one over the b.Window after, then
// runs the worker as the service runs it, with SMS_RATE_LIMIT at
// b.BurstRate, against a fake Twilio, and measures how late each text
// reached it and how fast the routine ones drained.
func (b *bench) burst(ctx context.Context) (*Burst, error) {
	if _, err := b.fresh(ctx); err != nil {
		return nil, err
	}
	protocols, err := b.burstProtocols()
	if err != nil {
		return nil, err
	}
	tw, sms, err := fakeTwilio()
	if err != nil {
		return nil, err
	}
	defer tw.Close()
	sched := scheduler.New(b.store, taskqueue.New(b.rdb), scheduler.Config{Protocols: protocols, Clinic: b.clinic})
	w, err := b.workerOn(protocols, sched, redisstore.NewLimiter(b.rdb, map[aftercare.Channel]float64{aftercare.SMS: b.BurstRate}),
		sms, nil, nil)
	if err != nil {
		return nil, err
	}

	total := b.Burst + b.BurstClinical
	lead := time.Duration(float64(total)/400*float64(time.Second)) + 5*time.Second
	ten := time.Now().Add(lead).Truncate(time.Second) // the clinic's 10:00
	due := make([]time.Time, total)
	for i := range total {
		due[i] = ten
		if i >= b.Burst { // clinical: one by one over the window
			due[i] = ten.Add(time.Duration(i-b.Burst) * b.Window / time.Duration(b.BurstClinical))
		}
	}
	b.step("burst: booking %d routine texts due at %s and %d clinical over the %s after, SMS_RATE_LIMIT=%g",
		b.Burst, ten.Format(time.TimeOnly), b.BurstClinical, b.Window, b.BurstRate)
	if err := bookTexts(ctx, b, sched, "burst", total, ten, lead, func(i int) (string, time.Time, string) {
		if i >= b.Burst {
			return "botox", due[i], burstPhone(i)
		}
		return "filler", due[i], burstPhone(i)
	}); err != nil {
		return nil, err
	}

	srv := taskqueue.NewServer(b.rdb, taskqueue.ServerConfig{Concurrency: b.Concurrency, ShutdownTimeout: 10 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err := srv.Start(taskqueue.Handlers{Sends: w}); err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	rss := watchRSS(tw, b.Burst)
	drain := time.Duration(float64(b.Burst)/b.BurstRate*float64(time.Second)) + 2*time.Minute
	if _, ok := tw.Wait(total, time.Until(ten.Add(drain))); !ok {
		return nil, fmt.Errorf("burst: only %d of %d texts arrived", tw.Len(), total)
	}
	r := &Burst{Routine: b.Burst, Clinical: b.BurstClinical, Window: b.Window, Limit: b.BurstRate}
	r.RSSEarly, r.RSSLate, r.HeapEarly, r.HeapLate = rss()
	var routine, clinical []time.Duration
	var first, last time.Time
	for _, m := range tw.Messages() {
		i, err := strconv.Atoi(strings.TrimPrefix(m.To, "+1777"))
		if err != nil || i >= total {
			return nil, fmt.Errorf("burst: a text to a number the bench did not book")
		}
		late := m.Received.Sub(due[i])
		if i >= b.Burst {
			clinical = append(clinical, late)
			if late > time.Hour { // the upright step's deadline
				r.PastDeadline++
			}
			continue
		}
		routine = append(routine, late)
		if late > 72*time.Hour {
			r.PastDeadline++
		}
		if first.IsZero() || m.Received.Before(first) {
			first = m.Received
		}
		if m.Received.After(last) {
			last = m.Received
		}
	}
	if n := len(routine); n > 1 {
		r.Rate = float64(n-1) / last.Sub(first).Seconds()
	}
	slices.Sort(routine)
	slices.Sort(clinical)
	r.RoutineP50, r.RoutineP99, r.RoutineMax = percentile(routine, 0.5), percentile(routine, 0.99), routine[len(routine)-1]
	r.ClinicalP50, r.ClinicalP99, r.ClinicalMax = percentile(clinical, 0.5), percentile(clinical, 0.99), clinical[len(clinical)-1]
	return r, nil
}

func burstPhone(i int) string { return fmt.Sprintf("+1777%07d", i) }

// watchRSS samples the process's resident set while the burst drains and
// returns a function that stops and gives the sample taken once a tenth of
// the routine texts had reached tw, and the last one, each with the live
// heap less tw's texts (see Burst).
func watchRSS(tw *twiliotest.Server, routine int) func() (early, late, heapEarly, heapLate int64) {
	var (
		mu                     sync.Mutex
		early, late, heapEarly int64
		stop                   = make(chan struct{})
		done                   = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			kb := residentKiB()
			mu.Lock()
			if early == 0 && tw.Len() >= routine/10 {
				early, heapEarly = kb, heapLess(tw)
			}
			late = kb
			mu.Unlock()
		}
	}()
	return func() (int64, int64, int64, int64) {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return early, late, heapEarly, heapLess(tw)
	}
}

// heapLess is the live heap after a collection, less the bytes of the
// texts tw keeps, in KiB.
func heapLess(tw *twiliotest.Server) int64 {
	var kept int64
	for _, m := range tw.Messages() {
		kept += int64(unsafe.Sizeof(m)) + int64(len(m.SID)+len(m.To)+len(m.From)+len(m.MessagingServiceSID)+len(m.Body)+len(m.StatusCallback))
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return (int64(ms.HeapAlloc) - kept) / 1024
}

// residentKiB is the process's resident set now, from /proc/self/statm; 0
// where there is none.
func residentKiB() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize()) / 1024
}
