// Command aftercare runs the aftercare service: the clinic API that takes
// bookings and the worker that sends each planned SMS and email on time.
//
// It is the only place that reads the environment and wires the packages
// together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	_ "time/tzdata" // patient time zones work on hosts without zoneinfo

	"github.com/aftercare/aftercare/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the command in args as the process does and returns its exit
// code: 0, or 1 with the error on stderr, one "aftercare:" line per
// problem. Asking for help (-h) is not an error.
func cli(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	err := run(ctx, args, lookup, stdout, stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintln(stderr, "aftercare:", line)
		}
	}
	return 1
}

const usage = `aftercare sends consent, reminder and aftercare messages for clinic bookings,
by SMS (Twilio) and email (SMTP), each at the right local time.

Usage:
  aftercare serve [--role R]       run the clinic API and the message worker
                                   (--role api or worker to scale them apart)
  aftercare booking ACTION ...     create, update, cancel, treated, stop, resend, get,
                                   show the history of, or export the consent of a
                                   booking through a running aftercare; example prints
                                   a booking to try it with (aftercare booking -h)
  aftercare inbox [ACTION ...]     list, show, resolve or opt out patients' texts that
                                   need a person (aftercare inbox -h)
  aftercare events [ACTION ...]    list the endpoints that receive events, enable one,
                                   or send events again (aftercare events -h)
  aftercare preview [--now TIME] [--locale L] FILE
                                   print the timeline and messages a booking would get
  aftercare rekey                  bring the data in Redis under the first data key,
                                   after adding a new one (aftercare rekey -h)
  aftercare health [--url URL]     exit 0 if the service at URL is ready (for container
                                   health checks; default this machine, HTTP_ADDR's port)
  aftercare version                print the version and the commit it was built from
  aftercare help                   show this help

With no settings, serve runs on an embedded in-memory Redis and prints every
SMS and email to a console outbox. Settings are environment variables:

`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	config.Usage(w)
	fmt.Fprint(w, "\nSee README.md for the API, the message timeline and deployment.\n")
}

// run executes the command in args; it is main without the process.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return errors.New("no command given")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return nil
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		role := fs.String("role", config.RoleAll, "what to run: all (API and worker), api, or worker")
		fs.Usage = func() { printUsage(stderr) }
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *role != config.RoleAll && *role != config.RoleAPI && *role != config.RoleWorker {
			return fmt.Errorf("--role %q: use all, api or worker", *role)
		}
		cfg, err := config.Load(lookup)
		if err != nil {
			return err
		}
		cfg.Role = *role
		return serve(ctx, cfg, stdout, stderr)
	case "booking":
		return bookingCmd(ctx, args[1:], lookup, stdout, stderr)
	case "inbox":
		return inboxCmd(ctx, args[1:], lookup, stdout, stderr)
	case "events":
		return eventsCmd(ctx, args[1:], lookup, stdout, stderr)
	case "preview":
		return previewCmd(args[1:], lookup, stdout, stderr)
	case "rekey":
		return rekeyCmd(ctx, args[1:], lookup, stdout, stderr)
	case "health":
		return healthCmd(ctx, args[1:], lookup, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version())
		return nil
	default:
		msg := fmt.Sprintf("unknown command %q", args[0])
		if near := closest(args[0], commands); near != "" {
			msg += fmt.Sprintf("; did you mean %q?", near)
		}
		return errors.New(msg + " (aftercare help lists the commands)")
	}
}

// commands are the first words run knows.
var commands = []string{"serve", "booking", "inbox", "events", "preview", "rekey", "health", "version", "help"}

// closest returns the command within two edits of word, if there is one.
func closest(word string, among []string) string {
	best, bestDist := "", 3
	for _, c := range among {
		if d := editDistance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// version is the module version and the commit the binary was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "aftercare (unknown version)"
	}
	out := "aftercare " + info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		out += ", commit " + rev
		if t := settings["vcs.time"]; t != "" {
			out += " of " + t
		}
		if settings["vcs.modified"] == "true" {
			out += " with local changes"
		}
	}
	return out + ", " + info.GoVersion
}

// healthCmd asks a running service whether it is ready: exit 0 if so. A
// container image without a shell uses it as its health check.
func healthCmd(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	here := (&config.Config{HTTPAddr: envOr(lookup, "HTTP_ADDR", ":8080")}).PublicBase() // this machine, on the port serve listens on
	base := fs.String("url", envOr(lookup, "AFTERCARE_URL", here), "the service's base URL (env AFTERCARE_URL; default this machine on the port of HTTP_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	status, body, err := call(ctx, "GET", strings.TrimSuffix(*base, "/")+"/readyz", "", nil)
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("not ready (HTTP %d): %s", status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
