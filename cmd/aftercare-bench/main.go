// Command aftercare-bench measures aftercare against raw asynq in one run
// (see internal/bench) and prints a table of figures and ratios. It needs
// redis-server on PATH.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/aftercare/aftercare/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "aftercare-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := bench.Defaults
	cfg.Progress = stderr
	fs := flag.NewFlagSet("aftercare-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Bookings, "bookings", cfg.Bookings, "bookings to schedule and send")
	fs.IntVar(&cfg.Tasks, "tasks", cfg.Tasks, "bare asynq tasks for the baseline")
	fs.IntVar(&cfg.Producers, "producers", cfg.Producers, "goroutines enqueueing or booking at once")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "worker concurrency, for asynq and aftercare alike")
	fs.IntVar(&cfg.Timing, "timing", cfg.Timing, "messages for the timing run, due over --window; 0 skips it")
	fs.DurationVar(&cfg.Window, "window", cfg.Window, "how long the timing run's messages, and the burst run's clinical texts, fall due over")
	fs.IntVar(&cfg.Memory, "memory", cfg.Memory, "bookings for the Redis memory measurement, next to as many bare asynq tasks as they plan; 0 skips it")
	fs.IntVar(&cfg.Burst, "burst", cfg.Burst, "routine texts due in the same second for the burst run, with --burst-clinical clinical texts due over the --window after; 0 skips it")
	fs.IntVar(&cfg.BurstClinical, "burst-clinical", cfg.BurstClinical, "clinical texts of the burst run")
	fs.Float64Var(&cfg.BurstRate, "burst-rate", cfg.BurstRate, "SMS_RATE_LIMIT of the burst run, texts per second")
	fs.Func("scale", "comma-separated numbers of live `bookings` at which to time booking, reading and cancelling through the HTTP API; empty or 0 skips it (default "+joinInts(cfg.Scale)+")",
		func(v string) (err error) {
			cfg.Scale, err = parseLevels(v)
			return err
		})
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the mixed send measurement (this process only) to `FILE`, for go tool pprof, and one of each booking and single-channel send beside it: for cpu.pprof, cpu.book-go.pprof, cpu.book-http.pprof, cpu.sms.pprof, cpu.naive-sms.pprof, cpu.email.pprof and cpu.naive-email.pprof")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: aftercare-bench [flags]

Starts a private redis-server, a fake Twilio and an SMTP server, and measures
raw asynq and aftercare in the same run: enqueue and no-op processing against
booking through Go and HTTP; end-to-end sending, both channels together and
each alone against a naive asynq handler that just calls the provider; how
late timed texts go out; a 10 o'clock burst of routine texts behind the
SMS rate limit with clinical texts due among them; the latency of booking, reading and cancelling with
Redis holding more and more bookings; and Redis memory per booking. A full
run takes several minutes. Needs redis-server on PATH.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see -h", fs.Arg(0))
	}
	report, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return report.Print(stdout)
}

// parseLevels reads --scale: comma-separated positive numbers; "" or "0"
// is none.
func parseLevels(v string) ([]int, error) {
	if v = strings.TrimSpace(v); v == "" || v == "0" {
		return nil, nil
	}
	var levels []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a number of bookings; give positive numbers such as 1000,10000", f)
		}
		levels = append(levels, n)
	}
	return levels, nil
}

// joinInts writes ns as parseLevels reads them.
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
