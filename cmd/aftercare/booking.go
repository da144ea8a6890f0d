package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
)

const bookingUsage = `Usage:
  aftercare booking create FILE        book the appointment in FILE (JSON, - for stdin)
  aftercare booking update FILE        replace (reschedule) the booking in FILE
  aftercare booking cancel ID          cancel before the visit; --notify tells the patient
  aftercare booking treated ID         report the end of treatment (--at, default now)
  aftercare booking stop ID            stop the remaining aftercare on purpose, without
                                       telling the patient (--reason)
  aftercare booking get ID             show the timeline
  aftercare booking history ID         show the audit trail: every send, receipt, change
  aftercare booking consent ID         export the patient's acknowledgement of the consent:
                                       how and when, the typed name, address and browser,
                                       and the exact text shown, for the clinic's records
  aftercare booking example           print a booking to try the service with: bk_1001 (--id)
                                       at 15:00 the day after tomorrow in America/New_York
                                       (--zone), or a duration from now (--in 72h, --in -30m)
  aftercare booking resend ID STEP CHANNEL
                                       send a failed, expired or outcome-unknown message
                                       again, on purpose (--reason, --by)

Flags (before the ID or FILE):
`

// bookingFlags are the flags of aftercare booking; each action reads the
// ones it needs.
type bookingFlags struct {
	api         *apiClient
	notify      bool
	at          string
	reason, by  string
	exampleID   string
	exampleIn   time.Duration
	exampleZone string
}

// newBookingFlags defines the flags of aftercare booking on a new flag set,
// whose usage and errors go to stderr.
func newBookingFlags(lookup func(string) (string, bool), stdout, stderr io.Writer) (*flag.FlagSet, *bookingFlags) {
	fs := flag.NewFlagSet("booking", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &bookingFlags{api: newAPIClient(fs, lookup, stdout, "print the API's JSON answer instead of a table")}
	fs.BoolVar(&f.notify, "notify", false, "cancel: send the patient a cancellation message")
	fs.StringVar(&f.at, "at", "", "treated: when the treatment ended, RFC 3339 (default now)")
	fs.StringVar(&f.reason, "reason", "", "resend, stop: why (required)")
	fs.StringVar(&f.by, "by", "", "resend: who asks (required)")
	fs.StringVar(&f.exampleID, "id", "bk_1001", "example: the booking's id")
	fs.DurationVar(&f.exampleIn, "in", 0, "example: how far from now the appointment is, such as 72h or -30m (default: 15:00 the day after tomorrow)")
	fs.StringVar(&f.exampleZone, "zone", "America/New_York", "example: the patient's time zone")
	fs.Usage = func() {
		fmt.Fprint(stderr, bookingUsage)
		fs.PrintDefaults()
	}
	return fs, f
}

// bookingCmd talks to a running aftercare's API.
func bookingCmd(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs, f := newBookingFlags(lookup, stdout, stderr)
	// Flags may come before the action or between it and its argument.
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("booking: no action given")
	}
	action := fs.Arg(0)
	rest, err := parseInterspersed(fs, fs.Args()[1:])
	if err != nil {
		return err
	}
	if action == "example" {
		if len(rest) != 0 {
			fs.Usage()
			return fmt.Errorf("booking example takes no arguments, got %d", len(rest))
		}
		var in *time.Duration
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name == "in" {
				in = &f.exampleIn
			}
		})
		return printExample(stdout, f.exampleID, f.exampleZone, in, time.Now())
	}
	want := 1
	if action == "resend" {
		want = 3
	}
	if len(rest) != want {
		fs.Usage()
		return fmt.Errorf("booking %s: expected %d arguments, got %d", action, want, len(rest))
	}
	act, ok := bookingActions[action]
	if !ok {
		fs.Usage()
		return fmt.Errorf("booking: unknown action %q", action)
	}
	return act(ctx, f, rest, stdout)
}

// bookingAction calls the API for one action with its arguments (one, or
// three for resend) and prints the answer to w.
type bookingAction func(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error

// bookingActions are the actions of aftercare booking but example, which
// needs no running aftercare.
var bookingActions = map[string]bookingAction{
	"create":  bookingCreate,
	"update":  bookingUpdate,
	"cancel":  bookingCancel,
	"treated": bookingTreated,
	"stop":    bookingStop,
	"get":     bookingGet,
	"history": bookingHistory,
	"consent": bookingConsent,
	"resend":  bookingResend,
}

func bookingCreate(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	body, err := readFile(args[0])
	if err != nil {
		return err
	}
	var tl aftercare.Timeline
	if done, err := f.api.do(ctx, "POST", "/v1/bookings", body, &tl); done || err != nil {
		return err
	}
	if f.api.status == http.StatusCreated {
		fmt.Fprintln(w, "created")
	} else {
		fmt.Fprintln(w, "already existed, with the same details: nothing changed")
	}
	printAnswer(w, &tl)
	return nil
}

// bookingUpdate replaces the booking whose id is in the file.
func bookingUpdate(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	body, err := readFile(args[0])
	if err != nil {
		return err
	}
	var b struct{ ID string }
	if err := json.Unmarshal(body, &b); err != nil || b.ID == "" {
		return fmt.Errorf("booking update: %s has no \"id\"", args[0])
	}
	return showTimeline(ctx, f.api, w, "PUT", bookingPath(b.ID), body)
}

func bookingCancel(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	path := bookingPath(args[0])
	if f.notify {
		path += "?notify=true"
	}
	return showTimeline(ctx, f.api, w, "DELETE", path, nil)
}

func bookingTreated(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	when := f.at
	if when == "" {
		when = time.Now().Format(time.RFC3339)
	}
	body, _ := json.Marshal(map[string]string{"treated_at": when})
	return showTimeline(ctx, f.api, w, "POST", bookingPath(args[0])+"/treated", body)
}

func bookingStop(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	path := bookingPath(args[0]) + "?stop_aftercare=true&reason=" + url.QueryEscape(f.reason)
	return showTimeline(ctx, f.api, w, "DELETE", path, nil)
}

func bookingGet(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	return showTimeline(ctx, f.api, w, "GET", bookingPath(args[0]), nil)
}

func bookingHistory(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	var tl aftercare.Timeline
	if done, err := f.api.do(ctx, "GET", bookingPath(args[0]), nil, &tl); done || err != nil {
		return err
	}
	printHistory(w, &tl)
	return nil
}

func bookingConsent(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	var cr aftercare.ConsentRecord
	if done, err := f.api.do(ctx, "GET", bookingPath(args[0])+"/consent", nil, &cr); done || err != nil {
		return err
	}
	printConsent(w, &cr)
	return nil
}

// bookingResend sends the message of args[1] (the step) on args[2] (the
// channel) again.
func bookingResend(ctx context.Context, f *bookingFlags, args []string, w io.Writer) error {
	body, _ := json.Marshal(map[string]string{"reason": f.reason, "by": f.by})
	path := bookingPath(args[0]) + "/messages/" + url.PathEscape(args[1]) + "/" + url.PathEscape(args[2]) + "/resend"
	return showTimeline(ctx, f.api, w, "POST", path, body)
}

// bookingPath is the API path of the booking id.
func bookingPath(id string) string {
	return "/v1/bookings/" + url.PathEscape(id)
}

// showTimeline calls the API and prints the timeline it answers.
func showTimeline(ctx context.Context, api *apiClient, w io.Writer, method, path string, body []byte) error {
	var tl aftercare.Timeline
	if done, err := api.do(ctx, method, path, body, &tl); done || err != nil {
		return err
	}
	printAnswer(w, &tl)
	return nil
}

// printAnswer prints a timeline the API answered, and its warnings.
func printAnswer(w io.Writer, tl *aftercare.Timeline) {
	printTimeline(w, tl)
	for _, s := range tl.Warnings {
		fmt.Fprintln(w, "warning:", s)
	}
}

// printExample writes a booking for an appointment at 15:00 the day after
// tomorrow in zone, or, with in, at the next quarter hour that far from
// now: the README's walk-through books it, so its examples work on any day.
func printExample(w io.Writer, id, zone string, in *time.Duration, now time.Time) error {
	loc, err := aftercare.LoadLocation(zone)
	if err != nil {
		return fmt.Errorf("--zone: %q is not an IANA time zone such as Europe/Madrid", zone)
	}
	now = now.In(loc)
	at := time.Date(now.Year(), now.Month(), now.Day()+2, 15, 0, 0, 0, loc)
	if in != nil {
		at = now.Add(*in)
		if q := at.Truncate(15 * time.Minute); q.Before(at) {
			at = q.Add(15 * time.Minute)
		}
	}
	b := aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: at.Truncate(time.Second), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: zone, Locale: "en", SMSOptIn: true, EmailOptIn: true}}
	if err := (&aftercare.Booking{ID: b.ID, Treatment: b.Treatment, AppointmentAt: b.AppointmentAt, Patient: b.Patient}).Normalize(); err != nil {
		return fmt.Errorf("the example would not be a valid booking: %w", err) // a --zone or --id the API refuses
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(b)
}

// callAPI calls the API at base and decodes its JSON answer into v, or,
// with raw set, writes it there as it came and reports done. An error
// answer becomes an error that lists each bad field.
func callAPI(ctx context.Context, base, token, method, path string, body []byte, raw io.Writer, v any) (status int, done bool, err error) {
	status, data, err := call(ctx, method, strings.TrimSuffix(base, "/")+path, token, body)
	if err != nil {
		return 0, false, err
	}
	if status >= 400 {
		return status, false, problemError(status, data)
	}
	if raw != nil {
		_, err := raw.Write(data)
		return status, true, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return status, false, fmt.Errorf("unexpected answer (%d): %s", status, data)
	}
	return status, false, nil
}

// apiClient is what the commands that talk to a running aftercare share:
// where it is, the token, and whether to print its answers as JSON.
type apiClient struct {
	base, token string
	asJSON      bool
	out         io.Writer
	// status is the HTTP status of the last answer.
	status int
}

// newAPIClient defines the flags --url, --token and --json (what jsonHelp
// says) on fs; answers printed as JSON go to out.
func newAPIClient(fs *flag.FlagSet, lookup func(string) (string, bool), out io.Writer, jsonHelp string) *apiClient {
	c := &apiClient{out: out}
	fs.StringVar(&c.base, "url", envOr(lookup, "AFTERCARE_URL", "http://localhost:8080"), "aftercare API base URL (env AFTERCARE_URL)")
	fs.StringVar(&c.token, "token", envOr(lookup, "AFTERCARE_TOKEN", config.DevToken), "API token (env AFTERCARE_TOKEN)")
	fs.BoolVar(&c.asJSON, "json", false, jsonHelp)
	return c
}

// do calls the API and decodes its answer into v; with --json it prints
// the answer instead and reports done.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, v any) (done bool, err error) {
	var raw io.Writer
	if c.asJSON {
		raw = c.out
	}
	c.status, done, err = callAPI(ctx, c.base, c.token, method, path, body, raw, v)
	return done, err
}

func envOr(lookup func(string) (string, bool), key, def string) string {
	if v, ok := lookup(key); ok && v != "" {
		return v
	}
	return def
}

func readFile(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

func call(ctx context.Context, method, target, token string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the aftercare API (is it running? set --url or AFTERCARE_URL): %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, data, err
}

// problemError turns an RFC 9457 answer into an error that lists each field.
func problemError(status int, data []byte) error {
	var p struct {
		Title  string                 `json:"title"`
		Detail string                 `json:"detail"`
		Errors []aftercare.FieldError `json:"errors"`
	}
	if json.Unmarshal(data, &p) != nil || p.Title == "" {
		return fmt.Errorf("HTTP %d: %s", status, bytes.TrimSpace(data))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d): %s", p.Title, status, p.Detail)
	for _, f := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Message)
	}
	if status == http.StatusUnauthorized {
		b.WriteString("\n  this command sends the token of --token, or of AFTERCARE_TOKEN (default " + config.DevToken + ")")
	}
	return errors.New(b.String())
}

// printTimeline prints a timeline as a table in the patient's time.
func printTimeline(w io.Writer, tl *aftercare.Timeline) {
	fmt.Fprintf(w, "%s  version %d  %s\n", tl.ID, tl.Version, tl.Status)
	if ack := tl.ConsentAcknowledgement; ack != nil {
		fmt.Fprintf(w, "consent acknowledged %s (%s)\n", ack.At.Format("Mon Jan 2 15:04 MST"), ack.Method)
	} else {
		fmt.Fprintln(w, "consent not acknowledged yet")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tCHANNEL\tSEND AT\tDEADLINE\tSTATUS\tDETAIL")
	for _, m := range tl.Messages {
		detail := m.ProviderID
		if m.Error != "" {
			detail = m.Error
		} else if detail == "" {
			detail = m.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Step, m.Channel,
			m.SendAt.Format("Mon Jan 2 15:04 MST"), m.Deadline.Format("Mon Jan 2 15:04 MST"), m.Status, detail)
	}
	tw.Flush()
}

// printConsent prints an acknowledgement of the consent with its evidence:
// a record a clinic can file.
func printConsent(w io.Writer, cr *aftercare.ConsentRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"Booking", cr.BookingID}, {"Acknowledged", cr.At.Format(time.RFC3339)}, {"Method", cr.Method},
		{"Digest", cr.Digest}, {"Treatment", cr.Treatment}, {"Protocol version", cr.ProtocolVersion},
		{"Template version", cr.TemplateVersion}, {"Language", cr.Locale}, {"Answered text", cr.ProviderID},
	}
	if ev := cr.Evidence; ev != nil {
		rows = append(rows, [2]string{"Typed name", ev.Name}, [2]string{"IP address", ev.IP}, [2]string{"Browser", ev.UserAgent})
	}
	for _, r := range rows {
		if r[1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
		}
	}
	tw.Flush()
	if ev := cr.Evidence; ev != nil {
		fmt.Fprintf(w, "\nThe text shown (its SHA-256 is the digest):\n\n%s\n", ev.Text)
	}
}

// printHistory prints a booking's audit trail, oldest first.
func printHistory(w io.Writer, tl *aftercare.Timeline) {
	fmt.Fprintf(w, "%s  version %d  %s\n\n", tl.ID, tl.Version, tl.Status)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tWHAT\tMESSAGE\tBY\tDETAIL")
	for _, e := range tl.History {
		what, msg := string(e.Kind), ""
		if e.Step != "" {
			msg = e.Step + "/" + string(e.Channel)
		}
		if e.Kind == aftercare.EventSend {
			what = fmt.Sprintf("send #%d: %s", e.Number, e.Outcome)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format("Jan 2 15:04:05 MST"), what, msg, e.By, e.Detail)
	}
	tw.Flush()
}
