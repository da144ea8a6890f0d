// Command aftercare-chaos runs aftercare's worker processes under faults
// and counts every message (see internal/chaos). It exits 1 if a message
// went out twice, was lost, or ended without a reason. It needs
// redis-server on PATH, and Go to build the aftercare binary it runs
// unless --aftercare names one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aftercare/aftercare/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "aftercare-chaos:", err)
		os.Exit(2)
	case !ok:
		os.Exit(1)
	}
}

// run parses args, makes the run and prints its report; ok is false when
// the run found problems.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (ok bool, err error) {
	cfg := chaos.Defaults
	cfg.Progress = stderr
	var race bool
	var only string
	fs := flag.NewFlagSet("aftercare-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Aftercare, "aftercare", "", "the aftercare binary to run as workers; default: build ./cmd/aftercare of this module with go build")
	fs.BoolVar(&race, "race", false, "build the workers with the race detector; a race report fails the run")
	fs.IntVar(&cfg.Bookings, "bookings", cfg.Bookings, "appointments to book; each has an SMS and an email consent and an SMS at the end of treatment due in the window")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "worker processes")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "sends in flight per worker process")
	fs.DurationVar(&cfg.Window, "window", cfg.Window, "how long bookings come in and messages fall due, with faults throughout (at least 20s)")
	fs.DurationVar(&cfg.Every, "every", cfg.Every, "mean time between faults")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "how long to wait after the window for every due message to reach a final status")
	fs.StringVar(&only, "faults", "", "comma-separated faults to pick from (default all: "+strings.Join(chaos.FaultNames(), ", ")+")")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed for the choice and timing of faults; 0 picks one (printed, to replay a run)")
	fs.BoolVar(&cfg.CrashRedis, "crash-redis", false, "restart redis-server with SIGKILL, a crash, instead of a clean shutdown: it loses the writes --fsync had not synced")
	fs.StringVar(&cfg.Fsync, "fsync", cfg.Fsync, "Redis appendfsync policy: everysec or always")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the Redis data and worker logs (they are kept anyway if the run fails)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: aftercare-chaos [flags]

Books appointments whose messages fall due over --window, runs --workers
"aftercare serve --role worker" processes against a private redis-server (AOF
on), a fake Twilio and an SMTP server, and at random kills a worker with
SIGKILL and starts another, restarts redis-server, makes Twilio answer 500 or
429 or take a text without answering, and makes the SMTP server refuse. Then
it counts what each provider received per message and exits 1 if a message
went out twice, was recorded sent but never arrived, or was left without a
final status and its reason. Needs redis-server on PATH.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q; see -h", fs.Arg(0))
	}
	if only != "" {
		cfg.Faults = strings.Split(only, ",")
	}
	if cfg.Aftercare == "" {
		dir, err := os.MkdirTemp("", "aftercare-chaos-bin-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		if cfg.Aftercare, err = build(ctx, filepath.Join(dir, "aftercare"), race, stderr); err != nil {
			return false, err
		}
	}
	report, err := chaos.Run(ctx, cfg)
	if err != nil {
		return false, err
	}
	return report.OK(), report.Print(stdout)
}

// build builds the aftercare command of this module to path.
func build(ctx context.Context, path string, race bool, stderr io.Writer) (string, error) {
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/aftercare/aftercare/cmd/aftercare")
	fmt.Fprintf(stderr, "chaos: go %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the aftercare binary (run this from the source tree, or pass --aftercare PATH): %w", err)
	}
	return path, nil
}
