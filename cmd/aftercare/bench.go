package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/api"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/redisproc"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/smtp"
	"github.com/aftercare/aftercare/twilio"
	"github.com/aftercare/aftercare/worker"
)

// bench measures aftercare against raw asynq on a private redis-server, in
// one run, and prints a table of figures and ratios.
type bench struct {
	rdb         *redis.Client
	bookings    int
	tasks       int
	producers   int
	concurrency int
	timing      int
	window      time.Duration
	memory      int
	cpuProfile  string
	progress    io.Writer
	protocols   map[string]aftercare.Protocol
	clinic      aftercare.Clinic
}

// benchResult is one line of the table.
type benchResult struct {
	name, value, ratio string
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := &bench{progress: stderr}
	fs.IntVar(&b.bookings, "bookings", 2000, "bookings to schedule and send")
	fs.IntVar(&b.tasks, "tasks", 20000, "bare asynq tasks for the baseline")
	fs.IntVar(&b.producers, "producers", 8, "goroutines enqueueing or booking at once")
	fs.IntVar(&b.concurrency, "concurrency", 20, "worker concurrency, for asynq and aftercare alike")
	fs.IntVar(&b.timing, "timing", 10000, "messages for the timing run, due over --window; 0 skips it")
	fs.DurationVar(&b.window, "window", time.Minute, "how long the timing run's messages fall due over")
	fs.IntVar(&b.memory, "memory", 100000, "bookings for the Redis memory measurement, next to as many bare asynq tasks as they plan; 0 skips it")
	fs.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the send measurement (this process only) to `FILE`, for go tool pprof")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: aftercare bench [flags]\n\nStarts a private redis-server, a fake Twilio and an SMTP server, and measures\nraw asynq and aftercare in the same run. Needs redis-server on PATH.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if b.bookings < 1 || b.tasks < 1 || b.producers < 1 || b.concurrency < 1 || b.timing < 0 || b.memory < 0 {
		return fmt.Errorf("bench: --bookings, --tasks, --producers and --concurrency must be at least 1, --timing and --memory at least 0")
	}

	dir, err := os.MkdirTemp("", "aftercare-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := redisproc.StartServer(dir)
	if err != nil {
		return fmt.Errorf("bench needs redis-server: %w", err)
	}
	defer srv.Stop()
	b.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 4 * b.producers})
	defer b.rdb.Close()
	if b.protocols, err = protocol.Builtin(); err != nil {
		return err
	}
	if b.clinic, err = config.LoadClinic(""); err != nil {
		return err
	}
	b.clinic.QuietHours = aftercare.QuietHours{} // measure sending, not waiting for the morning

	enqueue, _, err := b.rawEnqueue(ctx, b.tasks)
	if err != nil {
		return err
	}
	process, err := b.rawProcess(ctx)
	if err != nil {
		return err
	}
	schedule, _, tasksPerBooking, err := b.schedule(ctx, b.bookings)
	if err != nil {
		return err
	}
	viaHTTP, err := b.scheduleHTTP(ctx)
	if err != nil {
		return err
	}
	send, err := b.send(ctx)
	if err != nil {
		return err
	}
	var timing, memory []benchResult
	if b.timing > 0 {
		if timing, err = b.timingRun(ctx); err != nil {
			return err
		}
	}
	if b.memory > 0 {
		if memory, err = b.memoryRun(ctx); err != nil {
			return err
		}
	}
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)

	results := []benchResult{
		{"raw asynq: enqueue (scheduled tasks)", fmt.Sprintf("%.0f tasks/s", enqueue), ""},
		{"raw asynq: process no-op tasks", fmt.Sprintf("%.0f tasks/s", process), ""},
		{"aftercare: book through the Go package", fmt.Sprintf("%.0f bookings/s = %.0f tasks/s", schedule, schedule*tasksPerBooking),
			fmt.Sprintf("%.2fx raw enqueue per task", schedule*tasksPerBooking/enqueue)},
		{"aftercare: book through the HTTP API", fmt.Sprintf("%.0f bookings/s = %.0f tasks/s", viaHTTP, viaHTTP*tasksPerBooking),
			fmt.Sprintf("%.2fx raw enqueue per task", viaHTTP*tasksPerBooking/enqueue)},
		{"aftercare: send, due now -> provider -> recorded", fmt.Sprintf("%.0f messages/s", send),
			fmt.Sprintf("%.2fx raw no-op processing", send/process)},
	}
	results = append(results, timing...)
	results = append(results, memory...)
	results = append(results, benchResult{"bench process heap in use at the end", fmt.Sprintf("%.1f MiB (RSS %s)", float64(mem.HeapInuse)/(1<<20), procStatus("self", "VmRSS")), ""})
	fmt.Fprintf(stdout, "aftercare bench: %d bookings, %d raw tasks, %d producers, worker concurrency %d, %d CPUs, %s\n\n",
		b.bookings, b.tasks, b.producers, b.concurrency, runtime.NumCPU(), runtime.Version())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tRESULT\tRATIO")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.value, r.ratio)
	}
	return tw.Flush()
}

func (b *bench) step(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

// fresh empties Redis and returns its memory use.
func (b *bench) fresh(ctx context.Context) (int64, error) {
	if err := b.rdb.FlushAll(ctx).Err(); err != nil {
		return 0, err
	}
	return b.usedMemory(ctx)
}

func (b *bench) usedMemory(ctx context.Context) (int64, error) {
	info, err := b.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO memory has no used_memory")
}

// parallel runs fn(i) for i in [0, n) on b.producers goroutines and
// returns the elapsed time and the first error. If it runs for more than
// 10 s it prints how far it got, as "what: done/n", every 10 s.
func (b *bench) parallel(what string, n int, fn func(i int) error) (time.Duration, error) {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-finished:
				return
			case <-tick.C:
				b.step("%s: %d/%d", what, min(next.Load(), int64(n)), n)
			}
		}
	}()
	for range b.producers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

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
	b.step("raw asynq: processing %d no-op tasks at concurrency %d", b.tasks, b.concurrency)
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	client := asynq.NewClientFromRedisClient(b.rdb)
	if _, err := b.parallel("raw enqueue", b.tasks, func(int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", nil), asynq.Queue("bench"))
		return err
	}); err != nil {
		return 0, err
	}
	var done atomic.Int64
	all := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: b.concurrency, Queues: map[string]int{"bench": 1},
		TaskCheckInterval: 200 * time.Millisecond, LogLevel: asynq.ErrorLevel,
	})
	start := time.Now()
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(b.tasks) {
			close(all)
		}
		return nil
	})); err != nil {
		return 0, err
	}
	<-all
	elapsed := time.Since(start)
	srv.Shutdown()
	return float64(b.tasks) / elapsed.Seconds(), nil
}

func (b *bench) booking(i int) aftercare.Booking {
	return aftercare.Booking{
		ID: fmt.Sprintf("bench_%06d", i), Treatment: "botox",
		AppointmentAt: time.Now().Add(7 * 24 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: fmt.Sprintf("+1555%07d", i%10000000), Email: fmt.Sprintf("p%d@example.com", i),
			Timezone: "America/New_York", SMSOptIn: true, EmailOptIn: true},
	}
}

func (b *bench) scheduler() *scheduler.Client {
	return scheduler.New(redisstore.New(b.rdb), scheduler.AsynqTasks(b.rdb), scheduler.Config{Protocols: b.protocols, Clinic: b.clinic})
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

// memoryRun books b.memory appointments, then enqueues as many bare asynq
// tasks as they planned, each on an empty Redis, and compares the memory
// each takes per task.
func (b *bench) memoryRun(ctx context.Context) ([]benchResult, error) {
	_, perBooking, tasksPerBooking, err := b.schedule(ctx, b.memory)
	if err != nil {
		return nil, err
	}
	tasks := int(float64(b.memory)*tasksPerBooking + 0.5)
	_, perRaw, err := b.rawEnqueue(ctx, tasks)
	if err != nil {
		return nil, err
	}
	if _, err := b.fresh(ctx); err != nil { // give the memory back
		return nil, err
	}
	perTask := perBooking / tasksPerBooking
	return []benchResult{{
		fmt.Sprintf("Redis memory per booking (%d bookings)", b.memory),
		fmt.Sprintf("%.0f bytes (%.1f tasks, %.0f bytes a task)", perBooking, tasksPerBooking, perTask),
		fmt.Sprintf("%.2fx a bare asynq task (%.0f bytes, %d tasks)", perTask/perRaw, perRaw, tasks),
	}}, nil
}

// scheduleHTTP books through the HTTP API on loopback and returns bookings
// per second.
func (b *bench) scheduleHTTP(ctx context.Context) (float64, error) {
	b.step("aftercare: booking %d appointments through the HTTP API", b.bookings)
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	srv := httptest.NewServer(api.New(api.Config{Bookings: b.scheduler(), Tokens: []string{"bench"}}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.producers}}
	elapsed, err := b.parallel("booked", b.bookings, func(i int) error {
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
	return float64(b.bookings) / elapsed.Seconds(), nil
}

// send books appointments whose consent (SMS and email) is due now, then
// starts the worker against a fake Twilio and an SMTP server, and returns
// messages per second from start to every message recorded as sent.
func (b *bench) send(ctx context.Context) (float64, error) {
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	sched := b.scheduler()
	if _, err := b.parallel("booked", b.bookings, func(i int) error {
		_, _, err := sched.Book(ctx, b.booking(i))
		return err
	}); err != nil {
		return 0, err
	}
	want := 2 * b.bookings
	b.step("aftercare: sending %d consent messages (SMS and email) at concurrency %d", want, b.concurrency)

	tw := twiliotest.New(fakeAccountSID, fakeAuthToken)
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
	renderer, err := messages.New(b.clinic, b.protocols)
	if err != nil {
		return 0, err
	}
	store := redisstore.New(b.rdb)
	w := worker.New(worker.Config{Store: store, Renderer: renderer, SMS: sms, Email: email, Protocols: b.protocols})
	srv := asynq.NewServerFromRedisClient(b.rdb, worker.ServerConfig(b.concurrency, 10*time.Second, slog.New(slog.DiscardHandler)))

	stopProfile, err := b.startProfile()
	if err != nil {
		return 0, err
	}
	defer stopProfile()
	start := time.Now()
	if err := srv.Start(w.Mux()); err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	for got, last, moved := 0, 0, time.Now(); got < want; got = tw.Len() + mail.Len() {
		if got != last {
			last, moved = got, time.Now()
		}
		if time.Since(moved) > 30*time.Second {
			return 0, fmt.Errorf("sending stalled at %d of %d messages", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Sent counts once the status is recorded too: read every status in one
	// pipeline until all say sent.
	for {
		sent, err := b.consentsSent(ctx)
		if err != nil {
			return 0, err
		}
		if sent == want {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return float64(want) / time.Since(start).Seconds(), nil
}

// consentsSent counts the bookings' consent messages recorded sent.
func (b *bench) consentsSent(ctx context.Context) (int, error) {
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, b.bookings)
	for i := range cmds {
		cmds[i] = pipe.HMGet(ctx, redisstore.Key(b.booking(i).ID), "m:consent:sms", "m:consent:email")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	sent := 0
	for _, c := range cmds {
		for _, v := range c.Val() {
			if v == string(aftercare.StatusSent) {
				sent++
			}
		}
	}
	return sent, nil
}

// startProfile starts the CPU profile asked for with --cpuprofile, if any,
// and returns the function that stops and writes it.
func (b *bench) startProfile() (stop func(), err error) {
	if b.cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(b.cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	b.step("writing a CPU profile of the send measurement to %s", b.cpuProfile)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// timingRun books b.timing appointments, SMS only, whose "stay upright"
// text falls due at whole seconds spread over b.window, runs the worker, and
// measures how long after its time each text reached the fake Twilio.
func (b *bench) timingRun(ctx context.Context) ([]benchResult, error) {
	if _, err := b.fresh(ctx); err != nil {
		return nil, err
	}
	tw := twiliotest.New(fakeAccountSID, fakeAuthToken)
	defer tw.Close()
	sms, err := twilioSender(tw.URL())
	if err != nil {
		return nil, err
	}
	renderer, err := messages.New(b.clinic, b.protocols)
	if err != nil {
		return nil, err
	}
	// Leave time to book everything before the first is due.
	lead := time.Duration(float64(b.timing)/500*float64(time.Second)) + 5*time.Second
	first := time.Now().Add(lead).Truncate(time.Second)
	seconds := max(int(b.window/time.Second), 1)
	due := map[string]time.Time{}
	phone := func(i int) string { return fmt.Sprintf("+1666%07d", i) }
	for i := range b.timing {
		due[phone(i)] = first.Add(time.Duration(i%seconds) * time.Second)
	}
	b.step("timing: booking %d texts due over %s from %s", b.timing, b.window, first.Format(time.TimeOnly))
	sched := b.scheduler()
	if _, err := b.parallel("booked", b.timing, func(i int) error {
		_, _, err := sched.Book(ctx, aftercare.Booking{
			ID: fmt.Sprintf("timing_%06d", i), Treatment: "botox", AppointmentAt: due[phone(i)],
			Patient: aftercare.Patient{FirstName: "Ana", Phone: phone(i), Timezone: "UTC", SMSOptIn: true},
		})
		return err
	}); err != nil {
		return nil, err
	}
	if time.Now().After(first) {
		return nil, fmt.Errorf("timing: booking took longer than the %s lead; use fewer --timing messages", lead)
	}

	w := worker.New(worker.Config{Store: redisstore.New(b.rdb), Renderer: renderer, SMS: sms, Protocols: b.protocols})
	srv := asynq.NewServerFromRedisClient(b.rdb, worker.ServerConfig(b.concurrency, 10*time.Second, slog.New(slog.DiscardHandler)))
	if err := srv.Start(w.Mux()); err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	// Each booking also sends its consent at once; only the upright texts,
	// sent at the end of treatment, are timed.
	want := 2 * b.timing
	deadline := first.Add(b.window + 2*time.Minute)
	for tw.Len() < want {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timing: only %d of %d texts arrived", tw.Len(), want)
		}
		time.Sleep(100 * time.Millisecond)
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
	return []benchResult{
		{fmt.Sprintf("timing: %d texts due over %s, provider call - due time", len(late), b.window),
			fmt.Sprintf("p50 %s, p99 %s, max %s", q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond)),
			fmt.Sprintf("%d early", early)},
	}, nil
}

// The credentials bench and chaos give their fake Twilio.
const (
	fakeAccountSID = "AC00000000000000000000000000000000"
	fakeAuthToken  = "00000000000000000000000000000000"
)

// twilioSender is the Twilio sender pointed at a fake.
func twilioSender(base string) (worker.Sender, error) {
	return twilio.New(twilio.Config{AccountSID: fakeAccountSID, AuthToken: fakeAuthToken,
		From: "+15555550100", BaseURL: base})
}

// procStatus returns a field of /proc/PID/status ("VmRSS", "VmHWM"), such
// as "40960 kB", for pid "self" or a number; "unknown" where there is no
// /proc.
func procStatus(pid, field string) string {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
