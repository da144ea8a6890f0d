package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aftercare/aftercare"
)

// TestBookingActionRequests: each action of aftercare booking calls the API
// with its method, path and body; a wrong action or argument count says so.
func TestBookingActionRequests(t *testing.T) {
	t.Parallel()
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = fmt.Sprintf("%s %s %s", r.Method, r.URL.RequestURI(), body)
		_ = json.NewEncoder(w).Encode(aftercare.Timeline{ID: "bk_1"})
	}))
	defer srv.Close()
	file := writeBooking(t, map[string]any{"id": "bk 1"})
	for _, c := range []struct {
		args []string
		want string // the request, or the error
	}{
		{[]string{"update", file}, `PUT /v1/bookings/bk%201 {"id":"bk 1"}`},
		{[]string{"cancel", "--notify", "bk_1"}, "DELETE /v1/bookings/bk_1?notify=true "},
		{[]string{"treated", "bk_1", "--at", "2026-01-02T15:00:00Z"}, `POST /v1/bookings/bk_1/treated {"treated_at":"2026-01-02T15:00:00Z"}`},
		{[]string{"stop", "--reason", "no show", "bk_1"}, "DELETE /v1/bookings/bk_1?stop_aftercare=true&reason=no+show "},
		{[]string{"get", "bk_1"}, "GET /v1/bookings/bk_1 "},
		{[]string{"resend", "bk_1", "consent", "sms", "--reason", "r", "--by", "b"}, `POST /v1/bookings/bk_1/messages/consent/sms/resend {"by":"b","reason":"r"}`},
		{[]string{"resend", "bk_1"}, "booking resend: expected 3 arguments, got 1"},
		{[]string{"frob", "bk_1"}, `booking: unknown action "frob"`},
	} {
		got = ""
		args := append([]string{"--url", srv.URL}, c.args...)
		err := bookingCmd(context.Background(), args, func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", strings.Join(c.args, " "), got, c.want)
		}
	}
}
