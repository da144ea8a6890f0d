// Package bench measures aftercare against raw asynq in one run, on a
// private redis-server with a fake Twilio and an in-process SMTP server, so
// every ratio compares figures taken on the same machine at the same time.
// cmd/aftercare-bench is its command line.
package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/redisproc"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/service"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/aftercare/aftercare/webhook"
)

// Config sizes a run. Zero Timing or Memory, or no Scale, skips that phase.
type Config struct {
	// Bookings are scheduled (through Go and through HTTP) and sent.
	Bookings int
	// Tasks are the bare asynq tasks of the baseline.
	Tasks int
	// Producers are the goroutines enqueueing or booking at once.
	Producers int
	// Concurrency is the worker concurrency, for asynq and aftercare alike.
	Concurrency int
	// Timing texts fall due over Window, and how late each reaches the
	// fake Twilio is measured.
	Timing int
	Window time.Duration
	// Memory bookings are made, and the Redis memory they take compared with
	// as many bare asynq tasks as they plan.
	Memory int
	// Burst routine texts fall due in the same second, and BurstClinical
	// clinical ones over the Window after, with the SMS rate limit at
	// BurstRate; zero Burst skips the phase.
	Burst, BurstClinical int
	BurstRate            float64
	// Scale are the numbers of live bookings at which the latency of
	// booking, reading and cancelling through the HTTP API is measured,
	// Redis being filled up to each in turn; none skips the phase.
	Scale []int
	// CPUProfile, if set, is where a CPU profile of the mixed send
	// measurement goes; each single-channel send, aftercare's and the naive
	// handler's, gets one of its own beside it (see profilePath).
	CPUProfile string
	// Progress gets a line per phase, and every 10 s on long ones; nil for
	// none.
	Progress io.Writer
}

// Defaults are the sizes of a full run.
var Defaults = Config{
	Bookings: 2000, Tasks: 20000, Producers: 8, Concurrency: 20,
	Timing: 10000, Window: time.Minute, Memory: 100000,
	Burst: 20000, BurstClinical: 200, BurstRate: 100,
	Scale: []int{1000, 10000, 100000},
}

func (c Config) check() error {
	if c.Bookings < 1 || c.Tasks < 1 || c.Producers < 1 || c.Concurrency < 1 || c.Timing < 0 || c.Memory < 0 {
		return errors.New("bench: bookings, tasks, producers and concurrency must be at least 1, timing and memory at least 0")
	}
	if (c.Timing > 0 || c.Burst > 0) && c.Window < time.Second {
		return errors.New("bench: the timing window must be at least 1s")
	}
	if c.Burst < 0 || (c.Burst > 0 && (c.BurstClinical < 1 || c.BurstRate <= 0)) {
		return errors.New("bench: a burst needs at least 1 clinical text and a rate limit above 0")
	}
	for _, n := range c.Scale {
		if n < 1 || n > probeBase {
			return fmt.Errorf("bench: scale level %d: each must be from 1 to %d bookings", n, probeBase)
		}
	}
	return nil
}

// Report is what a run measured.
type Report struct {
	Config Config
	// Raw asynq, in tasks per second.
	RawEnqueue, RawProcess float64
	// Bookings per second through the Go package and through the HTTP API,
	// and the tasks each booking planned.
	BookGo, BookHTTP, TasksPerBooking float64
	// Send is messages per second from due to recorded sent, SMS and email
	// together.
	Send float64
	// SendSMS and SendEmail are the same on one channel alone; NaiveSMS
	// and NaiveEmail what the naive handler (naive.go) does on that channel
	// with the same providers, from due to the provider's answer.
	SendSMS, SendEmail, NaiveSMS, NaiveEmail float64
	// Timing is nil when the phase was skipped.
	Timing *Timing
	// Burst is nil when the phase was skipped.
	Burst *Burst
	// Memory is nil when the phase was skipped.
	Memory *Memory
	// Scale has one entry per level, smallest first; nil when the phase
	// was skipped.
	Scale []ScaleLevel
	// HeapInUse is the bench process's heap at the end, in bytes, and
	// MaxRSS its peak resident set, in KiB.
	HeapInUse uint64
	MaxRSS    int64
}

// Timing is how late texts due over a window reached the provider.
type Timing struct {
	Texts         int
	P50, P99, Max time.Duration
	Early         int
	Window        time.Duration
}

// Memory compares the Redis memory of bookings with bare asynq tasks.
type Memory struct {
	Bookings            int
	PerBooking, PerTask float64 // bytes
	TasksPerBooking     float64
	RawTasks            int
	PerRawTask          float64 // bytes
}

// Run runs every phase, in order, on a private redis-server it starts and
// stops, and returns the figures.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.check(); err != nil {
		return Report{}, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "aftercare-bench-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(dir)
	srv, err := redisproc.StartServer(dir)
	if err != nil {
		return Report{}, fmt.Errorf("bench needs redis-server: %w", err)
	}
	defer srv.Stop()
	b := &bench{Config: cfg, rdb: redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 4 * cfg.Producers})}
	defer b.rdb.Close()
	if b.store, b.keys, err = sealedStore(b.rdb, cfg.Progress); err != nil {
		return Report{}, err
	}
	if b.protocols, err = protocol.Builtin(); err != nil {
		return Report{}, err
	}
	if b.clinic, err = config.LoadClinic(""); err != nil {
		return Report{}, err
	}
	b.clinic.QuietHours = aftercare.QuietHours{} // measure sending, not waiting for the morning
	return b.run(ctx)
}

// bench is one run.
type bench struct {
	Config
	rdb       *redis.Client
	protocols map[string]aftercare.Protocol
	clinic    aftercare.Clinic
	// store is the booking store of every aftercare phase, built as the
	// service builds it; keys are its data keys.
	store *redisstore.Store
	keys  [][]byte
}

// sealedStore returns the booking store on rdb as the service builds it
// (service.Store) for a deployment with a data key and an event endpoint:
// records sealed under a random 32-byte key, and every change marked for
// the event relay. No relay runs, so the marks are written, as in
// production, and stay. A mark that fails is logged to log; the log names
// bookings by id only.
func sealedStore(rdb redis.UniversalClient, log io.Writer) (*redisstore.Store, [][]byte, error) {
	key := make([]byte, 32)
	rand.Read(key) // crypto/rand.Read never fails
	keys := [][]byte{key}
	cfg := &config.Config{
		DataKeys:  keys,
		Endpoints: []webhook.Endpoint{{Name: "bench", URL: "https://events.bench.example/aftercare"}},
	}
	store, err := service.Store(rdb, cfg, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: the sealed store: %w", err)
	}
	return store, keys, nil
}

func (b *bench) run(ctx context.Context) (Report, error) {
	r := Report{Config: b.Config}
	var err error
	if r.RawEnqueue, _, err = b.rawEnqueue(ctx, b.Tasks); err != nil {
		return r, err
	}
	if r.RawProcess, err = b.rawProcess(ctx); err != nil {
		return r, err
	}
	if r.BookGo, _, r.TasksPerBooking, err = b.schedule(ctx, b.Bookings, "book-go"); err != nil {
		return r, err
	}
	if r.BookHTTP, err = b.scheduleHTTP(ctx); err != nil {
		return r, err
	}
	if r.Send, err = b.send(ctx, "", aftercare.SMS, aftercare.Email); err != nil {
		return r, err
	}
	if r.SendSMS, r.NaiveSMS, err = b.sendAgainstNaive(ctx, aftercare.SMS); err != nil {
		return r, err
	}
	if r.SendEmail, r.NaiveEmail, err = b.sendAgainstNaive(ctx, aftercare.Email); err != nil {
		return r, err
	}
	if b.Timing > 0 {
		if r.Timing, err = b.timing(ctx); err != nil {
			return r, err
		}
	}
	if b.Burst > 0 {
		if r.Burst, err = b.burst(ctx); err != nil {
			return r, err
		}
	}
	if len(b.Scale) > 0 {
		if r.Scale, err = b.scale(ctx); err != nil {
			return r, err
		}
	}
	if b.Memory > 0 {
		if r.Memory, err = b.memory(ctx); err != nil {
			return r, err
		}
	}
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	r.HeapInUse = mem.HeapInuse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.MaxRSS = ru.Maxrss
	}
	return r, nil
}

// Print writes the report as a table of figures and ratios.
func (r Report) Print(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "aftercare bench: %d bookings, %d raw tasks, %d producers, worker concurrency %d, %d CPUs, %s\n\n",
		c.Bookings, c.Tasks, c.Producers, c.Concurrency, runtime.NumCPU(), runtime.Version())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(name, value, ratio string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, value, ratio) }
	line("MEASURE", "RESULT", "RATIO")
	line("raw asynq: enqueue (scheduled tasks)", fmt.Sprintf("%.0f tasks/s", r.RawEnqueue), "")
	line("raw asynq: process no-op tasks", fmt.Sprintf("%.0f tasks/s", r.RawProcess), "")
	line("aftercare: book through the Go package", fmt.Sprintf("%.0f bookings/s = %.0f tasks/s", r.BookGo, r.BookGo*r.TasksPerBooking),
		fmt.Sprintf("%.2fx raw enqueue per task", r.BookGo*r.TasksPerBooking/r.RawEnqueue))
	line("aftercare: book through the HTTP API", fmt.Sprintf("%.0f bookings/s = %.0f tasks/s", r.BookHTTP, r.BookHTTP*r.TasksPerBooking),
		fmt.Sprintf("%.2fx raw enqueue per task", r.BookHTTP*r.TasksPerBooking/r.RawEnqueue))
	line("aftercare: send, due now -> provider -> recorded", fmt.Sprintf("%.0f messages/s", r.Send),
		fmt.Sprintf("%.2fx raw no-op processing", r.Send/r.RawProcess))
	line("naive handler: SMS, due now -> Twilio", fmt.Sprintf("%.0f messages/s", r.NaiveSMS), "")
	line("aftercare: SMS only, due now -> Twilio -> recorded", fmt.Sprintf("%.0f messages/s", r.SendSMS),
		fmt.Sprintf("%.2fx naive SMS", r.SendSMS/r.NaiveSMS))
	line("naive handler: email, due now -> SMTP", fmt.Sprintf("%.0f messages/s", r.NaiveEmail), "")
	line("aftercare: email only, due now -> SMTP -> recorded", fmt.Sprintf("%.0f messages/s", r.SendEmail),
		fmt.Sprintf("%.2fx naive email", r.SendEmail/r.NaiveEmail))
	if t := r.Timing; t != nil {
		line(fmt.Sprintf("timing: %d texts due over %s, provider call - due time", t.Texts, t.Window),
			fmt.Sprintf("p50 %s, p99 %s, max %s", t.P50.Round(time.Millisecond), t.P99.Round(time.Millisecond), t.Max.Round(time.Millisecond)),
			fmt.Sprintf("%d early", t.Early))
	}
	if bu := r.Burst; bu != nil {
		ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		line(fmt.Sprintf("burst: %d clinical texts due over %s, behind %d routine", bu.Clinical, bu.Window, bu.Routine),
			fmt.Sprintf("late p50 %s, p99 %s, max %s", ms(bu.ClinicalP50), ms(bu.ClinicalP99), ms(bu.ClinicalMax)),
			fmt.Sprintf("%d past deadline", bu.PastDeadline))
		line(fmt.Sprintf("burst: %d routine texts due in one second", bu.Routine),
			fmt.Sprintf("late p50 %s, p99 %s, max %s", ms(bu.RoutineP50), ms(bu.RoutineP99), ms(bu.RoutineMax)),
			fmt.Sprintf("drained at %.1f/s, %.2fx the limit of %g/s", bu.Rate, bu.Rate/bu.Limit, bu.Limit))
		line("burst: bench process RSS, a tenth drained -> all drained",
			fmt.Sprintf("%d kB -> %d kB", bu.RSSEarly, bu.RSSLate), fmt.Sprintf("%.2fx", float64(bu.RSSLate)/float64(max(bu.RSSEarly, 1))))
		line("burst: live heap less the fake Twilio's kept texts, same points",
			fmt.Sprintf("%d kB -> %d kB", bu.HeapEarly, bu.HeapLate), fmt.Sprintf("%.2fx", float64(bu.HeapLate)/float64(max(bu.HeapEarly, 1))))
	}
	if m := r.Memory; m != nil {
		line(fmt.Sprintf("Redis memory per booking (%d bookings)", m.Bookings),
			fmt.Sprintf("%.0f bytes (%.1f tasks, %.0f bytes a task)", m.PerBooking, m.TasksPerBooking, m.PerTask),
			fmt.Sprintf("%.2fx a bare asynq task (%.0f bytes, %d tasks)", m.PerTask/m.PerRawTask, m.PerRawTask, m.RawTasks))
	}
	line("bench process heap in use at the end", fmt.Sprintf("%.1f MiB (peak RSS %d kB)", float64(r.HeapInUse)/(1<<20), r.MaxRSS), "")
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.printScale(w)
}

// printScale writes the scale curve, if it was measured, as a table of its
// own: a row per level.
func (r Report) printScale(w io.Writer) error {
	if len(r.Scale) == 0 {
		return nil
	}
	fmt.Fprint(w, "\nlatency through the HTTP API with Redis holding so many live bookings, one call at a time\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIVE BOOKINGS\tCALLS OF EACH\tBOOK p50\tBOOK p99\tGET p50\tGET p99\tCANCEL p50\tCANCEL p99")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", d.Seconds()*1000) }
	for _, l := range r.Scale {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Bookings, l.Sample,
			ms(l.Book.P50), ms(l.Book.P99), ms(l.Get.P50), ms(l.Get.P99), ms(l.Cancel.P50), ms(l.Cancel.P99))
	}
	return tw.Flush()
}

func (b *bench) step(format string, args ...any) {
	fmt.Fprintf(b.Progress, "bench: "+format+"\n", args...)
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
	return 0, errors.New("INFO memory has no used_memory")
}

// parallel runs fn(i) for i in [0, n) on b.Producers goroutines and
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
	for range b.Producers {
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

// scheduler returns a booking client on the bench's store.
func (b *bench) scheduler() *scheduler.Client {
	return scheduler.New(b.store, taskqueue.New(b.rdb), scheduler.Config{Protocols: b.protocols, Clinic: b.clinic})
}

// profilePath is where the CPU profile of the measurement called name
// goes: CPUProfile itself for "", else name inserted before CPUProfile's
// extension (cpu.pprof: cpu.sms.pprof).
func (b *bench) profilePath(name string) string {
	if name == "" {
		return b.CPUProfile
	}
	ext := filepath.Ext(b.CPUProfile)
	return strings.TrimSuffix(b.CPUProfile, ext) + "." + name + ext
}

// startProfile starts the CPU profile of the measurement called name (see
// profilePath), if profiles were asked for, and returns the function that
// stops and writes it.
func (b *bench) startProfile(name string) (stop func(), err error) {
	if b.CPUProfile == "" {
		return func() {}, nil
	}
	path := b.profilePath(name)
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	b.step("writing a CPU profile of this measurement to %s", path)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
