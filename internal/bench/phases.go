package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
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
	"github.com/aftercare/aftercare/scheduler"
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
// Redis bytes per booking and tasks per booking. The CPU profile, if asked
// for, is the one called profile (see profilePath); "" for none.
func (b *bench) schedule(ctx context.Context, n int, profile string) (float64, float64, float64, error) {
	b.step("aftercare: booking %d appointments through the Go package", n)
	before, err := b.fresh(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	sched := b.scheduler()
	var tasks atomic.Int64
	stopProfile := func() {}
	if profile != "" {
		if stopProfile, err = b.startProfile(profile); err != nil {
			return 0, 0, 0, err
		}
	}
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
	stopProfile()
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
	_, perBooking, tasksPerBooking, err := b.schedule(ctx, b.Memory, "")
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
	c := b.startAPI()
	defer c.close()
	stopProfile, err := b.startProfile("book-http")
	if err != nil {
		return 0, err
	}
	elapsed, err := b.parallel("booked", b.Bookings, func(i int) error {
		return c.book(ctx, b.booking(i))
	})
	stopProfile()
	if err != nil {
		return 0, err
	}
	return float64(b.Bookings) / elapsed.Seconds(), nil
}

// apiClient calls the HTTP API, served on loopback, as a clinic's backend
// does.
type apiClient struct {
	srv  *httptest.Server
	http *http.Client
}

// startAPI serves the HTTP API on the bench's store on loopback and
// returns a client of it that keeps a connection for each producer.
func (b *bench) startAPI() *apiClient {
	srv := httptest.NewServer(api.New(api.Config{Bookings: b.scheduler(), Tokens: []string{"bench"}}))
	return &apiClient{srv: srv, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.Producers}}}
}

// close closes the client's connections and stops the server.
func (c *apiClient) close() {
	c.http.CloseIdleConnections()
	c.srv.Close()
}

// book creates bk.
func (c *apiClient) book(ctx context.Context, bk aftercare.Booking) error {
	body, err := json.Marshal(map[string]any{
		"id": bk.ID, "treatment": bk.Treatment, "appointment_at": bk.AppointmentAt.Format(time.RFC3339),
		"duration_minutes": bk.DurationMinutes, "patient": bk.Patient,
	})
	if err != nil {
		return fmt.Errorf("encode booking %s: %w", bk.ID, err)
	}
	return c.call(ctx, http.MethodPost, "/v1/bookings", body, http.StatusCreated)
}

// get reads booking id's timeline.
func (c *apiClient) get(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodGet, "/v1/bookings/"+id, nil, http.StatusOK)
}

// cancel cancels booking id without telling the patient.
func (c *apiClient) cancel(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/bookings/"+id, nil, http.StatusOK)
}

// call makes one request with body, if any, as JSON, reads the whole
// answer, and fails unless its status is want.
func (c *apiClient) call(ctx context.Context, method, path string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, c.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer bench")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s, want %d", method, path, resp.Status, want)
	}
	return nil
}

// sentCounter counts the messages that reached the end of a send
// measurement, and closes done at want.
type sentCounter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func newSentCounter(want int) *sentCounter {
	return &sentCounter{want: int64(want), done: make(chan struct{})}
}

// sent counts one message.
func (c *sentCounter) sent() {
	if c.n.Add(1) == c.want {
		close(c.done)
	}
}

// Attempt counts each run of aftercare's worker that recorded its message
// sent (the worker tells once the status is written).
func (c *sentCounter) Attempt(_ string, _ aftercare.Channel, outcome aftercare.Outcome, _, _ time.Duration) {
	if outcome == aftercare.OutcomeSent {
		c.sent()
	}
}

// await waits until every message is counted and returns messages per
// second since start. It fails if no message is counted for 30 s.
func (c *sentCounter) await(ctx context.Context, start time.Time) (float64, error) {
	stall := time.NewTicker(30 * time.Second)
	defer stall.Stop()
	for last := int64(0); ; {
		select {
		case <-c.done:
			return float64(c.want) / time.Since(start).Seconds(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-stall.C:
			n := c.n.Load()
			if n == last {
				return 0, fmt.Errorf("sending stalled at %d of %d messages", n, c.want)
			}
			last = n
		}
	}
}

// bookingOn is booking i with the patient opted in to channels only.
func (b *bench) bookingOn(i int, channels []aftercare.Channel) aftercare.Booking {
	bk := b.booking(i)
	bk.Patient.SMSOptIn = slices.Contains(channels, aftercare.SMS)
	bk.Patient.EmailOptIn = slices.Contains(channels, aftercare.Email)
	return bk
}

// send books appointments whose patients opted in to channels and whose
// consent is due now, one message a channel, then starts the worker as the
// service runs it against a fake Twilio and an SMTP server, and returns
// messages per second from start to every message recorded as sent. The
// CPU profile, if asked for, is the one called profile (see profilePath).
func (b *bench) send(ctx context.Context, profile string, channels ...aftercare.Channel) (float64, error) {
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	sched := b.scheduler()
	if _, err := b.parallel("booked", b.Bookings, func(i int) error {
		_, _, err := sched.Book(ctx, b.bookingOn(i, channels))
		return err
	}); err != nil {
		return 0, fmt.Errorf("book for sending: %w", err)
	}
	want := len(channels) * b.Bookings
	b.step("aftercare: sending %d consent messages (%s) at concurrency %d", want, channelNames(channels), b.Concurrency)
	p, err := startProviders()
	if err != nil {
		return 0, err
	}
	defer p.close()
	sent := newSentCounter(want)
	w, err := b.worker(p.sms, p.email, sent)
	if err != nil {
		return 0, err
	}
	srv := taskqueue.NewServer(b.rdb, taskqueue.ServerConfig{Concurrency: b.Concurrency, ShutdownTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})

	stopProfile, err := b.startProfile(profile)
	if err != nil {
		return 0, err
	}
	defer stopProfile()
	start := time.Now()
	if err := srv.Start(taskqueue.Handlers{Sends: w}); err != nil {
		return 0, fmt.Errorf("start the worker: %w", err)
	}
	defer srv.Shutdown()
	return sent.await(ctx, start)
}

// channelNames is channels for a progress line: "sms and email".
func channelNames(channels []aftercare.Channel) string {
	names := make([]string, len(channels))
	for i, ch := range channels {
		names[i] = string(ch)
	}
	return strings.Join(names, " and ")
}

// providers are the fake Twilio and the SMTP server of one measurement,
// with aftercare's senders pointed at them.
type providers struct {
	twilio *twiliotest.Server
	mail   *smtptest.Server
	sms    *twilio.Sender
	email  *smtp.Sender
}

// startProviders starts a fake Twilio and an SMTP server.
func startProviders() (*providers, error) {
	p := &providers{twilio: twiliotest.New(twiliotest.AccountSID, twiliotest.AuthToken)}
	var err error
	if p.mail, err = smtptest.New(); err != nil {
		p.twilio.Close()
		return nil, fmt.Errorf("start the SMTP server: %w", err)
	}
	if p.sms, err = twilioSender(p.twilio.URL()); err == nil {
		p.email, err = smtp.New(smtp.Config{URL: p.mail.URL(), From: benchFrom})
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("aftercare's senders: %w", err)
	}
	return p, nil
}

// close closes the senders' connections and stops both servers.
func (p *providers) close() {
	if p.email != nil {
		p.email.Close()
	}
	p.mail.Close()
	p.twilio.Close()
}

// The clinic's number and email address in every measurement.
const (
	benchSMSFrom = "+15555550100"
	benchFrom    = "care@clinic.example"
)

// worker returns the send handler built as the service builds it
// (cmd/aftercare/serve.go) on the bench's store, without rate limits
// (SMS_RATE_LIMIT and EMAIL_RATE_LIMIT 0): it follows up on each message
// that ends, asks Twilio about texts in doubt, and logs each attempt as
// JSON, here into io.Discard. m hears of every outcome; email may be nil.
func (b *bench) worker(sms *twilio.Sender, email worker.Sender, m worker.Metrics) (*worker.Worker, error) {
	return b.workerOn(b.protocols, b.scheduler(), nil, sms, email, m)
}

// workerOn is worker with protocols, the scheduler its follow-ups go to,
// and a rate limiter (nil for none).
func (b *bench) workerOn(protocols map[string]aftercare.Protocol, followups *scheduler.Client, limiter worker.Limiter,
	sms *twilio.Sender, email worker.Sender, m worker.Metrics) (*worker.Worker, error) {
	renderer, err := b.renderer()
	if err != nil {
		return nil, err
	}
	return worker.New(worker.Config{
		Store: b.store, Renderer: renderer, SMS: sms, Email: email, Protocols: protocols, Clinic: b.clinic,
		Followups: followups, Finder: sms, Metrics: m, Limiter: limiter,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}), nil
}

// fakeTwilio starts a fake Twilio and returns it with a sender to it; the
// caller closes it.
func fakeTwilio() (*twiliotest.Server, *twilio.Sender, error) {
	tw := twiliotest.New(twiliotest.AccountSID, twiliotest.AuthToken)
	sms, err := twilioSender(tw.URL())
	if err != nil {
		tw.Close()
		return nil, nil, err
	}
	return tw, sms, nil
}

// timing books b.Timing appointments, SMS only, whose "stay upright" text
// falls due at whole seconds spread over b.Window, runs the worker, and
// measures how long after its time each text reached the fake Twilio.
func (b *bench) timing(ctx context.Context) (*Timing, error) {
	if _, err := b.fresh(ctx); err != nil {
		return nil, err
	}
	tw, sms, err := fakeTwilio()
	if err != nil {
		return nil, err
	}
	defer tw.Close()
	w, err := b.worker(sms, nil, nil)
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
	if err := bookTexts(ctx, b, sched, "timing", b.Timing, first, lead, func(i int) (string, time.Time, string) {
		return "botox", due[phone(i)], phone(i)
	}); err != nil {
		return nil, err
	}

	srv := taskqueue.NewServer(b.rdb, taskqueue.ServerConfig{Concurrency: b.Concurrency, ShutdownTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.Start(taskqueue.Handlers{Sends: w}); err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	// Each booking also sends its consent at once; only the upright texts,
	// sent at the end of treatment, are timed.
	want := 2 * b.Timing
	if _, ok := tw.Wait(want, time.Until(first.Add(b.Window+2*time.Minute))); !ok {
		return nil, fmt.Errorf("timing: only %d of %d texts arrived; the messages are %s", tw.Len(), want, b.statuses(ctx, "timing_%06d", b.Timing))
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
	return &Timing{Texts: len(late), P50: percentile(late, 0.5), P99: percentile(late, 0.99), Max: late[len(late)-1], Early: early, Window: b.Window}, nil
}

// percentile is the p-th quantile (0.5 for the median) of sorted, which
// must not be empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
}

// twilioSender is the Twilio sender pointed at a fake.
func twilioSender(base string) (*twilio.Sender, error) {
	return twilio.New(twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken,
		From: benchSMSFrom, BaseURL: base})
}

// renderer renders messages as the service does, consent links (signed
// with the bench's data keys) included.
func (b *bench) renderer() (*messages.Renderer, error) {
	links, err := consent.NewLinks("https://care.bench.example", b.keys)
	if err != nil {
		return nil, fmt.Errorf("consent links: %w", err)
	}
	r, err := messages.New(b.clinic, b.protocols, messages.Links(links))
	if err != nil {
		return nil, fmt.Errorf("renderer: %w", err)
	}
	return r, nil
}

// statuses counts the messages of bookings format(0) to format(n-1) by
// status and reason, for an error that says where texts went.
func (b *bench) statuses(ctx context.Context, format string, n int) string {
	count := map[string]int{}
	for i := range n {
		rec, err := b.store.Get(ctx, fmt.Sprintf(format, i))
		if err != nil {
			count["unreadable: "+err.Error()]++
			continue
		}
		for _, m := range rec.Messages {
			key := m.Step + "/" + string(m.Status)
			if m.Error != "" {
				key += " (" + m.Error + ")"
			}
			count[key]++
		}
	}
	keys := slices.Sorted(maps.Keys(count))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", count[k], k)
	}
	return strings.Join(parts, ", ")
}

// bookTexts books n bookings of patients on SMS alone, named what_NNNNNN,
// each of the treatment, appointment and number text(i) gives, and fails
// if that took past by, when the first of them falls due (lead after the
// start).
func bookTexts(ctx context.Context, b *bench, sched *scheduler.Client, what string, n int, by time.Time, lead time.Duration,
	text func(i int) (treatment string, at time.Time, phone string)) error {
	if _, err := b.parallel("booked", n, func(i int) error {
		treatment, at, phone := text(i)
		_, _, err := sched.Book(ctx, aftercare.Booking{
			ID: fmt.Sprintf("%s_%06d", what, i), Treatment: treatment, AppointmentAt: at,
			Patient: aftercare.Patient{FirstName: "Ana", Phone: phone, Timezone: "UTC", SMSOptIn: true},
		})
		return err
	}); err != nil {
		return err
	}
	if time.Now().After(by) {
		return fmt.Errorf("%s: booking took longer than the %s lead; use fewer messages", what, lead)
	}
	return nil
}
