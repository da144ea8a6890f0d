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
                                   booking through a running aftercare
                                   (aftercare booking -h)
  aftercare inbox [ACTION ...]     list, show, resolve or opt out patients' texts that
                                   need a person (aftercare inbox -h)
  aftercare events [ACTION ...]    list the endpoints that receive events, enable one,
                                   or send events again (aftercare events -h)
  aftercare preview [--now TIME] [--locale L] FILE
                                   print the timeline and messages a booking would get
  aftercare rekey                  bring the data in Redis under the first data key,
                                   after adding a new one (aftercare rekey -h)
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
	default:
		printUsage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
