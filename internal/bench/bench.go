// Package bench measures aftercare against raw asynq in one run, on a
// private redis-server with a fake Twilio and an in-process SMTP server, so
// every ratio compares figures taken on the same machine at the same time.
// cmd/aftercare-bench is its command line.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
	"github.com/aftercare/aftercare/taskqueue"
)

// Config sizes a run. Zero Timing or Memory skips that phase.
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
	// CPUProfile, if set, is where a CPU profile of the send phase goes.
	CPUProfile string
	// Progress gets a line per phase, and every 10 s on long ones; nil for
	// none.
	Progress io.Writer
}

// Defaults are the sizes of a full run.
var Defaults = Config{
	Bookings: 2000, Tasks: 20000, Producers: 8, Concurrency: 20,
	Timing: 10000, Window: time.Minute, Memory: 100000,
}

func (c Config) check() error {
	if c.Bookings < 1 || c.Tasks < 1 || c.Producers < 1 || c.Concurrency < 1 || c.Timing < 0 || c.Memory < 0 {
		return errors.New("bench: bookings, tasks, producers and concurrency must be at least 1, timing and memory at least 0")
	}
	if c.Timing > 0 && c.Window < time.Second {
		return errors.New("bench: the timing window must be at least 1s")
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
	// Send is messages per second from due to recorded sent.
	Send float64
	// Timing is nil when the phase was skipped.
	Timing *Timing
	// Memory is nil when the phase was skipped.
	Memory *Memory
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
	if r.BookGo, _, r.TasksPerBooking, err = b.schedule(ctx, b.Bookings); err != nil {
		return r, err
	}
	if r.BookHTTP, err = b.scheduleHTTP(ctx); err != nil {
		return r, err
	}
	if r.Send, err = b.send(ctx); err != nil {
		return r, err
	}
	if b.Timing > 0 {
		if r.Timing, err = b.timing(ctx); err != nil {
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
	if t := r.Timing; t != nil {
		line(fmt.Sprintf("timing: %d texts due over %s, provider call - due time", t.Texts, t.Window),
			fmt.Sprintf("p50 %s, p99 %s, max %s", t.P50.Round(time.Millisecond), t.P99.Round(time.Millisecond), t.Max.Round(time.Millisecond)),
			fmt.Sprintf("%d early", t.Early))
	}
	if m := r.Memory; m != nil {
		line(fmt.Sprintf("Redis memory per booking (%d bookings)", m.Bookings),
			fmt.Sprintf("%.0f bytes (%.1f tasks, %.0f bytes a task)", m.PerBooking, m.TasksPerBooking, m.PerTask),
			fmt.Sprintf("%.2fx a bare asynq task (%.0f bytes, %d tasks)", m.PerTask/m.PerRawTask, m.PerRawTask, m.RawTasks))
	}
	line("bench process heap in use at the end", fmt.Sprintf("%.1f MiB (peak RSS %d kB)", float64(r.HeapInUse)/(1<<20), r.MaxRSS), "")
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

func (b *bench) scheduler() *scheduler.Client {
	return scheduler.New(redisstore.New(b.rdb), taskqueue.New(b.rdb), scheduler.Config{Protocols: b.protocols, Clinic: b.clinic})
}

// startProfile starts the CPU profile asked for, if any, and returns the
// function that stops and writes it.
func (b *bench) startProfile() (stop func(), err error) {
	if b.CPUProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(b.CPUProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	b.step("writing a CPU profile of the send measurement to %s", b.CPUProfile)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
