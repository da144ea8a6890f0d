package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare/api"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
)

func writeBooking(t *testing.T, body map[string]any) string {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "booking.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBookingCommands drives a running service through the CLI.
func TestBookingCommands(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		args = append([]string{"booking", "--url", tb.url, args[0], "--token", testToken}, args[1:]...)
		err := run(context.Background(), args, func(string) (string, bool) { return "", false }, &out, io.Discard)
		return out.String(), err
	}
	appt := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	file := writeBooking(t, bookingBody("bk_cli", appt))

	out, err := cli("create", file)
	if err != nil || !strings.HasPrefix(out, "created\n") || !strings.Contains(out, "bk_cli  version 1  scheduled") || !strings.Contains(out, "day14") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if out, err = cli("create", file); err != nil || !strings.HasPrefix(out, "already existed") {
		t.Fatalf("create again: %v\n%s", err, out)
	}
	err = run(context.Background(), []string{"booking", "--url", tb.url, "--token", "wrong", "get", "bk_cli"},
		func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--token, or of AFTERCARE_TOKEN") {
		t.Errorf("a wrong token: %v", err)
	}
	moved := bookingBody("bk_cli", appt.Add(24*time.Hour))
	if out, err = cli("update", writeBooking(t, moved)); err != nil || !strings.Contains(out, "version 2") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	if out, err = cli("get", "bk_cli"); err != nil || !strings.Contains(out, "version 2") {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if _, err = cli("consent", "bk_cli"); err == nil || !strings.Contains(err.Error(), "has not acknowledged the consent yet") {
		t.Errorf("consent before any acknowledgement: %v", err)
	}
	if out, err = cli("cancel", "--notify", "bk_cli"); err != nil || !strings.Contains(out, "cancelled") || !strings.Contains(out, "cancellation") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	if out, err = cli("history", "bk_cli"); err != nil || !strings.Contains(out, "booked") || !strings.Contains(out, "rescheduled") ||
		!strings.Contains(out, "cancelled") || !strings.Contains(out, "the patient is told") {
		t.Fatalf("history: %v\n%s", err, out)
	}

	// After the visit, a booking's aftercare is stopped, not cancelled.
	if _, err = cli("create", writeBooking(t, bookingBody("bk_cli2", time.Now().Add(-time.Hour)))); err != nil {
		t.Fatal(err)
	}
	if _, err = cli("cancel", "bk_cli2"); err == nil || !strings.Contains(err.Error(), "HTTP 409") || !strings.Contains(err.Error(), "stop the aftercare") {
		t.Errorf("cancel after the visit: %v", err)
	}
	if _, err = cli("stop", "bk_cli2"); err == nil || !strings.Contains(err.Error(), "reason") {
		t.Errorf("stop without a reason: %v", err)
	}
	if out, err = cli("stop", "--reason", "did not come", "bk_cli2"); err != nil || !strings.Contains(out, "aftercare stopped by the clinic: did not come") {
		t.Errorf("stop: %v\n%s", err, out)
	}
	_, err = cli("get", "bk_missing")
	if err == nil || !strings.Contains(err.Error(), "Not found (HTTP 404)") {
		t.Errorf("get of a missing booking: %v", err)
	}
	bad := bookingBody("bk_bad", appt)
	bad["patient"].(map[string]any)["phone"] = "555"
	_, err = cli("create", writeBooking(t, bad))
	if err == nil || !strings.Contains(err.Error(), "patient.phone:") {
		t.Errorf("create of a bad booking: %v", err)
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	file := writeBooking(t, map[string]any{
		"id": "bk_p", "treatment": "botox", "appointment_at": "2026-12-01T15:00:00-05:00", "duration_minutes": 30,
		"patient": map[string]any{"first_name": "Ana", "phone": patientTel, "timezone": "America/New_York", "sms_opt_in": true},
	})
	var out bytes.Buffer
	err := run(context.Background(), []string{"preview", "--now", "2026-11-30T22:00:00-05:00", file},
		func(string) (string, bool) { return "", false }, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(out.String()), " ") // columns, not spacing
	for _, want := range []string{
		"consent sms Tue Dec 1 08:00 EST", // booked in quiet hours: deferred to 08:00
		"reminder sms Mon Nov 30 15:00 EST Tue Dec 1 13:00 EST skipped",
		"── upright / sms ──",
		"For the next 4 hours please stay upright",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("preview lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	err = run(context.Background(), []string{"preview", file, "--locale", "es", "--now", "2026-11-30T12:00:00-05:00"},
		func(string) (string, bool) { return "", false }, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "manténgase erguido/a") || !strings.Contains(out.String(), "(UCS-2)") {
		t.Errorf("preview --locale es: %v\n%s", err, out.String())
	}

	bad := writeBooking(t, map[string]any{"id": "bk_p", "treatment": "botox", "appointment_at": "soon"})
	err = run(context.Background(), []string{"preview", bad}, func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "appointment_at") {
		t.Errorf("preview of a bad booking: %v", err)
	}
}

// TestRekeyCommand: rekey names the settings it needs, and on a Redis with
// an opt-out written under the old key brings it under the new one.
func TestRekeyCommand(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := context.Background()
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	newKey[0] = 1
	old, _ := redisstore.NewSealed(rdb, [][]byte{oldKey})
	if err := old.SetOptOut(ctx, "+15555550123", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := run(ctx, []string{"rekey"}, lookup, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("rekey without REDIS_URL: %v", err)
	}
	env["REDIS_URL"] = "redis://" + rdb.Options().Addr
	if err := run(ctx, []string{"rekey"}, lookup, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "AFTERCARE_DATA_KEY") {
		t.Errorf("rekey without a data key: %v", err)
	}
	env["AFTERCARE_DATA_KEY"] = base64.StdEncoding.EncodeToString(newKey) + "," + base64.StdEncoding.EncodeToString(oldKey)
	var out bytes.Buffer
	if err := run(ctx, []string{"rekey"}, lookup, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 opt-outs") {
		t.Errorf("rekey printed %q", out.String())
	}
	next, _ := redisstore.NewSealed(rdb, [][]byte{newKey})
	if out, err := next.OptedOut(ctx, "+15555550123"); err != nil || !out {
		t.Errorf("after rekey, under the new key alone: OptedOut = %v, %v", out, err)
	}
}

// TestCommandLine: an unknown command says so first, with the closest
// one; -h is not an error; version and health answer.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	none := func(string) (string, bool) { return "", false }
	exec := func(args ...string) (int, string, string) {
		var out, errs bytes.Buffer
		code := cli(context.Background(), args, none, &out, &errs)
		return code, out.String(), errs.String()
	}
	if code, _, errs := exec("srve"); code != 1 || !strings.HasPrefix(errs, `aftercare: unknown command "srve"; did you mean "serve"?`) || strings.Count(errs, "\n") != 1 {
		t.Errorf("srve: %d %q", code, errs)
	}
	for _, args := range [][]string{{"serve", "-h"}, {"booking", "-h"}, {"inbox", "-h"}, {"help"}} {
		if code, _, _ := exec(args...); code != 0 {
			t.Errorf("%v exits %d", args, code)
		}
	}
	if code, out, _ := exec("version"); code != 0 || !strings.HasPrefix(out, "aftercare ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, errs := exec("health", "--url", tb.url); code != 0 || out != "ready\n" {
		t.Errorf("health of a running service: %d %q %q", code, out, errs)
	}
	if code, _, errs := exec("health", "--url", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errs, "cannot reach") {
		t.Errorf("health of nothing: %d %q", code, errs)
	}
}

// TestBookingExample: 15:00 the day after tomorrow in the zone, or the
// next quarter hour a duration from now; a booking the API takes.
func TestBookingExample(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 31, 22, 7, 0, 0, time.UTC) // 17:07 in New York
	for _, c := range []struct {
		in   *time.Duration
		zone string
		want string
	}{
		{nil, "America/New_York", "2027-01-02T15:00:00-05:00"},
		{nil, "Europe/Madrid", "2027-01-02T15:00:00+01:00"},
		{func() *time.Duration { d := -30 * time.Minute; return &d }(), "America/New_York", "2026-12-31T16:45:00-05:00"},
		{func() *time.Duration { d := 72 * time.Hour; return &d }(), "UTC", "2027-01-03T22:15:00Z"},
	} {
		var out bytes.Buffer
		if err := printExample(&out, "bk_x", c.zone, c.in, now); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), `"appointment_at": "`+c.want+`"`) {
			t.Errorf("%s: %s", c.zone, out.String())
		}
		if _, err := api.ParseBooking(&out); err != nil {
			t.Errorf("the example does not parse: %v", err)
		}
	}
	if err := printExample(io.Discard, "bk_x", "Mars/Olympus", nil, now); err == nil || !strings.Contains(err.Error(), "--zone") {
		t.Errorf("a bad zone: %v", err)
	}
	if err := printExample(io.Discard, "bk_x", "EST", nil, now); err == nil || !strings.Contains(err.Error(), "patient.timezone") {
		t.Errorf("a zone the API refuses: %v", err)
	}
}
