package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/api"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/scheduler"
)

// previewCmd prints the timeline a booking would get, with every message
// rendered, without touching Redis or sending anything.
func previewCmd(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nowFlag := fs.String("now", "", "plan as if booked at this RFC 3339 time (default now)")
	localeFlag := fs.String("locale", "", "render in this locale instead of the patient's (en, es)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: aftercare preview [--now TIME] [--locale LOCALE] FILE\n\nPrints the timeline and every message the booking in FILE (JSON, - for stdin)\nwould get, in the patient's time, using AFTERCARE_CLINIC_FILE and\nAFTERCARE_PROTOCOLS_DIR. Nothing is stored or sent.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("preview: expected one booking file")
	}
	now := time.Now()
	if *nowFlag != "" {
		var err error
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			return fmt.Errorf("--now: %q is not an RFC 3339 time", *nowFlag)
		}
	}

	clinicFile, _ := lookup("AFTERCARE_CLINIC_FILE")
	clinic, err := config.LoadClinic(clinicFile)
	if err != nil {
		return fmt.Errorf("AFTERCARE_CLINIC_FILE: %w", err)
	}
	dir, _ := lookup("AFTERCARE_PROTOCOLS_DIR")
	protocols, err := loadProtocols(dir)
	if err != nil {
		return err
	}
	renderer, err := newRenderer(clinic, protocols)
	if err != nil {
		return err
	}

	data, err := readFile(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := api.ParseBooking(strings.NewReader(string(data)))
	if err == nil && *localeFlag != "" {
		b.Patient.Locale = *localeFlag
	}
	if err == nil {
		err = b.Normalize()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	p, ok := protocols[b.Treatment]
	if !ok {
		return fmt.Errorf("%s: treatment: unknown treatment %q", fs.Arg(0), b.Treatment)
	}

	tl := &aftercare.Timeline{ID: b.ID, Version: 1, Status: aftercare.BookingScheduled,
		Messages: scheduler.Plan(&b, p, clinic.QuietHours, now, now)}
	fmt.Fprintf(stdout, "Booked %s; times are the patient's (%s).\n", now.In(b.Location()).Format("Mon Jan 2 15:04 MST"), b.Patient.Timezone)
	printTimeline(stdout, tl)
	first := true
	for _, m := range tl.Messages {
		isFirst := first && m.Channel == aftercare.SMS && m.Status == aftercare.StatusScheduled
		if isFirst {
			first = false
		}
		out, err := renderer.Render(&b, m.Step, m.Channel, isFirst)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\n── %s / %s ── %s ── %s", m.Step, m.Channel, m.SendAt.Format("Mon Jan 2 15:04 MST"), m.Status)
		if m.Channel == aftercare.SMS {
			n, enc := messages.Segments(out.Text)
			fmt.Fprintf(stdout, " ── %d %s, %d characters", n, plural(n, "part", "parts"), len([]rune(out.Text)))
			fmt.Fprintf(stdout, " (%s)", enc)
		}
		fmt.Fprintln(stdout)
		if m.Note != "" {
			fmt.Fprintf(stdout, "(%s)\n", m.Note)
		}
		if out.Subject != "" {
			fmt.Fprintf(stdout, "Subject: %s\n\n", out.Subject)
		}
		fmt.Fprintln(stdout, out.Text)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
