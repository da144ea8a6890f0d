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
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/service"
)

// previewCmd prints the timeline a booking would get, with every message
// rendered, without touching Redis or sending anything.
func previewCmd(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nowFlag := fs.String("now", "", "plan as if booked at this RFC 3339 time (default now)")
	locale := fs.String("locale", "", "render in this locale instead of the patient's (en, es)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: aftercare preview [--now TIME] [--locale LOCALE] FILE\n\nPrints the timeline and every message the booking in FILE (JSON, - for stdin)\nwould get, in the patient's time, using AFTERCARE_CLINIC_FILE and\nAFTERCARE_PROTOCOLS_DIR. Nothing is stored or sent.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, err := parseInterspersed(fs, fs.Args()) // flags may follow the file too
	if err != nil {
		return err
	}
	if len(files) != 1 {
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
	protocols, _, err := service.Protocols(dir)
	if err != nil {
		return err
	}
	// The consent link as a service with the same settings makes it.
	site := &config.Config{HTTPAddr: envOr(lookup, "HTTP_ADDR", ":8080"), PublicURL: envOr(lookup, "AFTERCARE_PUBLIC_URL", "")}
	keys, err := config.ParseDataKeys(envOr(lookup, "AFTERCARE_DATA_KEY", ""))
	if err != nil {
		return fmt.Errorf("AFTERCARE_DATA_KEY: %w", err)
	}
	links, err := consent.NewLinks(site.PublicBase(), keys)
	if err != nil {
		return err
	}
	renderer, err := newRenderer(clinic, protocols, links)
	if err != nil {
		return err
	}
	b, p, err := previewBooking(files[0], *locale, protocols)
	if err != nil {
		return err
	}

	tl := &aftercare.Timeline{ID: b.ID, Version: 1, Status: aftercare.BookingScheduled,
		Messages: scheduler.Plan(&b, p, clinic, now, now)}
	fmt.Fprintf(stdout, "Booked %s; times are the patient's (%s).\n", now.In(b.Location()).Format("Mon Jan 2 15:04 MST"), b.Patient.Timezone)
	printTimeline(stdout, tl)
	return printMessages(stdout, renderer, &aftercare.Record{Booking: b, Fingerprint: scheduler.Fingerprint(&b), Timeline: *tl}, tl.Messages)
}

// previewBooking reads and checks the booking in file, in locale if one is
// given, and returns it with its protocol.
func previewBooking(file, locale string, protocols map[string]aftercare.Protocol) (aftercare.Booking, aftercare.Protocol, error) {
	data, err := readFile(file)
	if err != nil {
		return aftercare.Booking{}, aftercare.Protocol{}, err
	}
	b, err := api.ParseBooking(strings.NewReader(string(data)))
	if err == nil && locale != "" {
		b.Patient.Locale = locale
	}
	if err == nil {
		err = b.Normalize()
	}
	if err != nil {
		return b, aftercare.Protocol{}, fmt.Errorf("%s: %w", file, err)
	}
	p, ok := protocols[b.Treatment]
	if !ok {
		return b, p, fmt.Errorf("%s: treatment: unknown treatment %q", file, b.Treatment)
	}
	return b, p, nil
}

// printMessages renders each planned message, with an SMS's cost and the
// note that says why a message moved or was dropped.
func printMessages(w io.Writer, renderer *messages.Renderer, rec *aftercare.Record, msgs []aftercare.Message) error {
	first := true
	for _, m := range msgs {
		isFirst := first && m.Channel == aftercare.SMS && m.Status == aftercare.StatusScheduled
		if isFirst {
			first = false
		}
		out, err := renderer.Render(rec, m.Step, m.Channel, isFirst)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n── %s / %s ── %s ── %s", m.Step, m.Channel, m.SendAt.Format("Mon Jan 2 15:04 MST"), m.Status)
		if m.Channel == aftercare.SMS {
			n, enc := messages.Segments(out.Text)
			fmt.Fprintf(w, " ── %d %s, %d characters (%s)", n, plural(n, "part", "parts"), len([]rune(out.Text)), enc)
		}
		fmt.Fprintln(w)
		if m.Note != "" {
			fmt.Fprintf(w, "(%s)\n", m.Note)
		}
		if out.Subject != "" {
			fmt.Fprintf(w, "Subject: %s\n\n", out.Subject)
		}
		fmt.Fprintln(w, out.Text)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
