package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/api"
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/smtp"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/aftercare/aftercare/twilio"
	"github.com/aftercare/aftercare/worker"
)

// rawEnqueue enqueues bare tasks scheduled for later, as aftercare's are,
// and returns tasks per second and Redis bytes per task.
func (b *bench) rawEnqueue(ctx context.Context, n int) (float64, float64, error) {
	b.step("raw asynq: enqueueing %d scheduled tasks", n)
	before, err := b.fresh(ctx)
	if err != nil {
		return 0, 0, err
	}
	client := asynq.NewClientFromRedisClient(b.rdb)
	later := time.Now().Add(time.Hour)
	payload := []byte(`{"n":0}`)
	elapsed, err := b.parallel("raw enqueue", n, func(int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", payload), asynq.ProcessAt(later), asynq.Queue("bench"))
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	after, err := b.usedMemory(ctx)
	return float64(n) / elapsed.Seconds(), float64(after-before) / float64(n), err
}

// rawProcess runs bare no-op tasks through an asynq server at the bench's
// concurrency and returns tasks per second.
func (b *bench) rawProcess(ctx context.Context) (float64, error) {
	b.step("raw asynq: processing %d no-op tasks at concurrency %d", b.Tasks, b.Concurrency)
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	client := asynq.NewClientFromRedisClient(b.rdb)
	if _, err := b.parallel("raw enqueue", b.Tasks, func(int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", nil), asynq.Queue("bench"))
		return err
	}); err != nil {
		return 0, err
	}
	var done atomic.Int64
	all := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: b.Concurrency, Queues: map[string]int{"bench": 1},
		TaskCheckInterval: 200 * time.Millisecond, LogLevel: asynq.ErrorLevel,
	})
	start := time.Now()
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(b.Tasks) {
			close(all)
		}
		return nil
	})); err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	select {
	case <-all:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(b.Tasks) / time.Since(start).Seconds(), nil
}

func (b *bench) booking(i int) aftercare.Booking {
	return aftercare.Booking{
		ID: fmt.Sprintf("bench_%06d", i), Treatment: "botox",
		AppointmentAt: time.Now().Add(7 * 24 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: fmt.Sprintf("+1555%07d", i%10000000), Email: fmt.Sprintf("p%d@example.com", i),
			Timezone: "America/New_York", SMSOptIn: true, EmailOptIn: true},
	}
}

// schedule books through the Go package and returns bookings per second,
// Redis bytes per booking and tasks per booking.
func (b *bench) schedule(ctx context.Context, n int) (float64, float64, float64, error) {
	b.step("aftercare: booking %d appointments through the Go package", n)
	before, err := b.fresh(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	sched := b.scheduler()
	var tasks atomic.Int64
	elapsed, err := b.parallel("booked", n, func(i int) error {
		tl, _, err := sched.Book(ctx, b.booking(i))
		if err == nil {
			for _, m := range tl.Messages {
				if m.Status == aftercare.StatusScheduled {
					tasks.Add(1)
				}
			}
		}
		return err
	})
	if err != nil {
		return 0, 0, 0, err
	}
	after, err := b.usedMemory(ctx)
	return float64(n) / elapsed.Seconds(), float64(after-before) / float64(n),
		float64(tasks.Load()) / float64(n), err
}

// memory books b.Memory appointments, then enqueues as many bare asynq
// tasks as they planned, each on an empty Redis, and compares the memory
// each takes per task.
func (b *bench) memory(ctx context.Context) (*Memory, error) {
	_, perBooking, tasksPerBooking, err := b.schedule(ctx, b.Memory)
	if err != nil {
		return nil, err
	}
	tasks := int(float64(b.Memory)*tasksPerBooking + 0.5)
	_, perRaw, err := b.rawEnqueue(ctx, tasks)
	if err != nil {
		return nil, err
	}
	if _, err := b.fresh(ctx); err != nil { // give the memory back
		return nil, err
	}
	return &Memory{Bookings: b.Memory, PerBooking: perBooking, PerTask: perBooking / tasksPerBooking,
		TasksPerBooking: tasksPerBooking, RawTasks: tasks, PerRawTask: perRaw}, nil
}

// scheduleHTTP books through the HTTP API on loopback and returns bookings
// per second.
func (b *bench) scheduleHTTP(ctx context.Context) (float64, error) {
	b.step("aftercare: booking %d appointments through the HTTP API", b.Bookings)
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	srv := httptest.NewServer(api.New(api.Config{Bookings: b.scheduler(), Tokens: []string{"bench"}}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.Producers}}
	elapsed, err := b.parallel("booked", b.Bookings, func(i int) error {
		bk := b.booking(i)
		body, _ := json.Marshal(map[string]any{
			"id": bk.ID, "treatment": bk.Treatment, "appointment_at": bk.AppointmentAt.Format(time.RFC3339),
			"duration_minutes": bk.DurationMinutes, "patient": bk.Patient,
		})
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/bookings", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST %s: %s", bk.ID, resp.Status)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return float64(b.Bookings) / elapsed.Seconds(), nil
}

// sentCounter counts the runs that recorded a message sent, and closes
// done at want.
type sentCounter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (c *sentCounter) Attempt(_ string, _ aftercare.Channel, outcome aftercare.Outcome, _, _ time.Duration) {
	if outcome == aftercare.OutcomeSent && c.n.Add(1) == c.want {
		close(c.done)
	}
}

// send books appointments whose consent (SMS and email) is due now, then
// starts the worker against a fake Twilio and an SMTP server, and returns
// messages per second from start to every message recorded as sent (the
// worker counts a send once its status is written).
func (b *bench) send(ctx context.Context) (float64, error) {
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	sched := b.scheduler()
	if _, err := b.parallel("booked", b.Bookings, func(i int) error {
		_, _, err := sched.Book(ctx, b.booking(i))
		return err
	}); err != nil {
		return 0, err
	}
	want := 2 * b.Bookings
	b.step("aftercare: sending %d consent messages (SMS and email) at concurrency %d", want, b.Concurrency)

	tw := twiliotest.New(twiliotest.AccountSID, twiliotest.AuthToken)
	defer tw.Close()
	mail, err := smtptest.New()
	if err != nil {
		return 0, err
	}
	defer mail.Close()
	sms, err := twilioSender(tw.URL())
	if err != nil {
		return 0, err
	}
	email, err := smtp.New(smtp.Config{URL: mail.URL(), From: "care@clinic.example"})
	if err != nil {
		return 0, err
	}
	defer email.Close()
	renderer, err := b.renderer()
	if err != nil {
		return 0, err
	}
	sent := &sentCounter{want: int64(want), done: make(chan struct{})}
	w := worker.New(worker.Config{Store: redisstore.New(b.rdb), Renderer: renderer, SMS: sms, Email: email, Protocols: b.protocols, Metrics: sent})
	srv := taskqueue.NewServer(b.rdb, taskqueue.ServerConfig{Concurrency: b.Concurrency, ShutdownTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})

	stopProfile, err := b.startProfile()
	if err != nil {
		return 0, err
	}
	defer stopProfile()
	start := time.Now()
	if err := srv.Start(taskqueue.Handlers{Sends: w}); err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	for last := int64(0); ; {
		select {
		case <-sent.done:
			return float64(want) / time.Since(start).Seconds(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(30 * time.Second):
			n := sent.n.Load()
			if n == last {
				return 0, fmt.Errorf("sending stalled at %d of %d messages", n, want)
			}
			last = n
		}
	}
}

// timing books b.Timing appointments, SMS only, whose "stay upright" text
// falls due at whole seconds spread over b.Window, runs the worker, and
// measures how long after its time each text reached the fake Twilio.
func (b *bench) timing(ctx context.Context) (*Timing, error) {
	if _, err := b.fresh(ctx); err != nil {
		return nil, err
	}
	tw := twiliotest.New(twiliotest.AccountSID, twiliotest.AuthToken)
	defer tw.Close()
	sms, err := twilioSender(tw.URL())
	if err != nil {
		return nil, err
	}
	renderer, err := b.renderer()
	if err != nil {
		return nil, err
	}
	// Leave time to book everything before the first is due.
	lead := time.Duration(float64(b.Timing)/500*float64(time.Second)) + 5*time.Second
	first := time.Now().Add(lead).Truncate(time.Second)
	seconds := max(int(b.Window/time.Second), 1)
	due := map[string]time.Time{}
	phone := func(i int) string { return fmt.Sprintf("+1666%07d", i) }
	for i := range b.Timing {
		due[phone(i)] = first.Add(time.Duration(i%seconds) * time.Second)
	}
	b.step("timing: booking %d texts due over %s from %s", b.Timing, b.Window, first.Format(time.TimeOnly))
	sched := b.scheduler()
	if _, err := b.parallel("booked", b.Timing, func(i int) error {
		_, _, err := sched.Book(ctx, aftercare.Booking{
			ID: fmt.Sprintf("timing_%06d", i), Treatment: "botox", AppointmentAt: due[phone(i)],
			Patient: aftercare.Patient{FirstName: "Ana", Phone: phone(i), Timezone: "UTC", SMSOptIn: true},
		})
		return err
	}); err != nil {
		return nil, err
	}
	if time.Now().After(first) {
		return nil, fmt.Errorf("timing: booking took longer than the %s lead; use fewer timing messages", lead)
	}

	w := worker.New(worker.Config{Store: redisstore.New(b.rdb), Renderer: renderer, SMS: sms, Protocols: b.protocols})
	srv := taskqueue.NewServer(b.rdb, taskqueue.ServerConfig{Concurrency: b.Concurrency, ShutdownTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.Start(taskqueue.Handlers{Sends: w}); err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	// Each booking also sends its consent at once; only the upright texts,
	// sent at the end of treatment, are timed.
	want := 2 * b.Timing
	if _, ok := tw.Wait(want, time.Until(first.Add(b.Window+2*time.Minute))); !ok {
		return nil, fmt.Errorf("timing: only %d of %d texts arrived", tw.Len(), want)
	}
	var late []time.Duration
	early := 0
	for _, m := range tw.Messages() {
		if !strings.Contains(m.Body, "stay upright") {
			continue
		}
		d := m.Received.Sub(due[m.To])
		if d < 0 {
			early++
		}
		late = append(late, d)
	}
	slices.Sort(late)
	q := func(p float64) time.Duration { return late[min(int(p*float64(len(late))), len(late)-1)] }
	return &Timing{Texts: len(late), P50: q(0.5), P99: q(0.99), Max: late[len(late)-1], Early: early, Window: b.Window}, nil
}

// twilioSender is the Twilio sender pointed at a fake.
func twilioSender(base string) (*twilio.Sender, error) {
	return twilio.New(twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken,
		From: "+15555550100", BaseURL: base})
}

// renderer renders messages as the service does, consent links included.
func (b *bench) renderer() (*messages.Renderer, error) {
	links, err := consent.NewLinks("https://care.bench.example", nil)
	if err != nil {
		return nil, err
	}
	return messages.New(b.clinic, b.protocols, messages.Links(links))
}
