package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aftercare/aftercare"
)

const inboxUsage = `Usage:
  aftercare inbox [list]                what waits for a person, urgent first (--all, --urgent)
  aftercare inbox show ID               one item, with the patient's words
  aftercare inbox resolve ID --note N   someone has taken care of it (--by NAME)
  aftercare inbox opt-out ID            the text was an opt-out: no more SMS to the number

Flags:
`

// inboxCmd talks to a running aftercare's inbox API.
func inboxCmd(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := newAPIClient(fs, lookup, stdout, "print the API's JSON answer instead of text")
	all := fs.Bool("all", false, "list: resolved items too")
	urgent := fs.Bool("urgent", false, "list: urgent items only")
	limit := fs.Int("limit", 50, "list: at most this many items")
	note := fs.String("note", "", "resolve: what was done (required)")
	by := fs.String("by", "", "resolve, opt-out: who did it")
	fs.Usage = func() {
		fmt.Fprint(stderr, inboxUsage)
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	action, id := "list", ""
	if len(rest) > 0 {
		action = rest[0]
	}
	if len(rest) > 1 {
		id = rest[1]
	}
	if (action == "list") != (len(rest) <= 1) || len(rest) > 2 {
		fs.Usage()
		return fmt.Errorf("inbox %s: expected %s", action, map[bool]string{true: "no argument", false: "one item id"}[action == "list"])
	}

	var method, path string
	var body []byte
	switch action {
	case "list":
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if *all {
			q.Set("status", "all")
		}
		if *urgent {
			q.Set("urgency", "urgent")
		}
		method, path = "GET", "/v1/inbox?"+q.Encode()
	case "show":
		method, path = "GET", "/v1/inbox/"+url.PathEscape(id)
	case "resolve":
		if *note == "" {
			return errors.New("inbox resolve: --note is required: say what was done")
		}
		body, _ = json.Marshal(map[string]string{"note": *note, "by": *by})
		method, path = "POST", "/v1/inbox/"+url.PathEscape(id)+"/resolve"
	case "opt-out":
		body, _ = json.Marshal(map[string]string{"by": *by})
		method, path = "POST", "/v1/inbox/"+url.PathEscape(id)+"/opt-out"
	default:
		fs.Usage()
		return fmt.Errorf("inbox: unknown action %q", action)
	}
	if action == "list" {
		var page struct {
			Items      []aftercare.InboxItem `json:"items"`
			NextCursor string                `json:"next_cursor"`
		}
		if done, err := api.do(ctx, method, path, body, &page); done || err != nil {
			return err
		}
		printInbox(stdout, page.Items, page.NextCursor != "")
		return nil
	}
	var item aftercare.InboxItem
	if done, err := api.do(ctx, method, path, body, &item); done || err != nil {
		return err
	}
	printItem(stdout, &item)
	return nil
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments, and returns those.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// printInbox prints items as a table, newest first as the API gave them.
func printInbox(w io.Writer, items []aftercare.InboxItem, more bool) {
	if len(items) == 0 {
		fmt.Fprintln(w, "Nothing waits for a person.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tURGENCY\tSTATUS\tRECEIVED\tBOOKING\tTEXT")
	for _, it := range items {
		booking := it.BookingID
		if booking == "" {
			booking = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.ID, strings.ToUpper(string(it.Urgency)), it.Status,
			it.ReceivedAt.Local().Format("Mon Jan 2 15:04 MST"), booking, oneLine(it.Text, 60))
	}
	tw.Flush()
	if more {
		fmt.Fprintln(w, "(more: --limit or --json for the cursor)")
	}
}

func printItem(w io.Writer, it *aftercare.InboxItem) {
	fmt.Fprintf(w, "%s  %s  %s\n", it.ID, strings.ToUpper(string(it.Urgency)), it.Status)
	from := ""
	if it.From != "" {
		from = " from " + it.From
	}
	fmt.Fprintf(w, "received  %s%s\n", it.ReceivedAt.Local().Format(time.RFC1123), from)
	switch {
	case it.BookingID != "" && it.FirstName != "":
		fmt.Fprintf(w, "booking   %s (%s)\n", it.BookingID, it.FirstName)
	case it.BookingID != "":
		fmt.Fprintf(w, "booking   %s\n", it.BookingID)
	}
	if len(it.Flags) > 0 {
		fmt.Fprintf(w, "red flags %s\n", strings.Join(it.Flags, ", "))
	}
	fmt.Fprintf(w, "done      %s\n", it.Action)
	if it.Answer != "" {
		fmt.Fprintf(w, "answered  %s\n", it.Answer)
	}
	fmt.Fprintf(w, "alerts    %d\n", it.Alerts)
	if it.ResolvedAt != nil {
		fmt.Fprintf(w, "resolved  %s by %s: %s\n", it.ResolvedAt.Local().Format(time.RFC1123), it.ResolvedBy, it.Note)
	}
	fmt.Fprintf(w, "\n%s\n", it.Text)
}

// oneLine shortens s to one line of at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
