package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aftercare/aftercare"
)

const eventsUsage = `Usage:
  aftercare events [endpoints]          the endpoints that receive events, and whether each is on
  aftercare events enable NAME          turn an endpoint back on after it answered 410 Gone
  aftercare events redeliver ID         send one event again, by its webhook-id
  aftercare events redeliver --since T  send again every delivery that failed since T (RFC 3339)

Flags:
`

// eventsCmd talks to a running aftercare's event routes.
func eventsCmd(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := newAPIClient(fs, lookup, stdout, "print the API's JSON answer instead of text")
	since := fs.String("since", "", "redeliver: every failed delivery since this RFC 3339 time")
	fs.Usage = func() {
		fmt.Fprint(stderr, eventsUsage)
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	action := "endpoints"
	if len(rest) > 0 {
		action, rest = rest[0], rest[1:]
	}
	want := map[string]int{"endpoints": 0, "enable": 1, "redeliver": 1}
	if action == "redeliver" && *since != "" {
		want["redeliver"] = 0
	}
	n, known := want[action]
	if !known {
		fs.Usage()
		return fmt.Errorf("events: unknown action %q", action)
	}
	if len(rest) != n {
		fs.Usage()
		return fmt.Errorf("events %s: expected %d arguments, got %d", action, n, len(rest))
	}

	switch {
	case action == "endpoints":
		var page struct {
			Endpoints []aftercare.EndpointState `json:"endpoints"`
		}
		if done, err := api.do(ctx, "GET", "/v1/event-endpoints", nil, &page); done || err != nil {
			return err
		}
		printEndpoints(stdout, page.Endpoints)
	case action == "enable":
		var st aftercare.EndpointState
		if done, err := api.do(ctx, "POST", "/v1/event-endpoints/"+url.PathEscape(rest[0])+"/enable", nil, &st); done || err != nil {
			return err
		}
		printEndpoints(stdout, []aftercare.EndpointState{st})
		fmt.Fprintln(stdout, "The events that waited while it was off are on their way.")
	default:
		path, body := "/v1/events/redeliver", []byte(nil)
		if *since != "" {
			if _, err := time.Parse(time.RFC3339, *since); err != nil {
				return fmt.Errorf("--since: %q is not an RFC 3339 time such as 2026-12-01T08:00:00Z", *since)
			}
			body, _ = json.Marshal(map[string]string{"since": *since})
		} else {
			path = "/v1/events/" + url.PathEscape(rest[0]) + "/redeliver"
		}
		var res struct {
			Queued int `json:"queued"`
		}
		if done, err := api.do(ctx, "POST", path, body, &res); done || err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d deliveries queued again.\n", res.Queued)
	}
	return nil
}

// printEndpoints prints endpoints as a table.
func printEndpoints(w io.Writer, eps []aftercare.EndpointState) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tURL\tTYPES")
	for _, e := range eps {
		state := "on"
		if e.Disabled {
			state = "DISABLED"
			if e.DisabledAt != nil {
				state += " since " + e.DisabledAt.Local().Format(time.RFC3339)
			}
		}
		types := "all"
		if len(e.Types) > 0 {
			names := make([]string, len(e.Types))
			for i, t := range e.Types {
				names[i] = string(t)
			}
			types = strings.Join(names, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, state, e.URL, types)
	}
	tw.Flush()
}
