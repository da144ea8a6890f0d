package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare/internal/bench"
	"github.com/aftercare/aftercare/internal/redistest"
)

// TestRun keeps every phase working: a tiny run measures something in each
// and prints every line of the table. It asserts no timings.
func TestRun(t *testing.T) {
	t.Parallel()
	redistest.RequireServer(t)
	report, err := bench.Run(context.Background(), bench.Config{
		Bookings: 20, Tasks: 200, Producers: 2, Concurrency: 4, Timing: 20, Window: 2 * time.Second, Memory: 50,
		Burst: 200, BurstClinical: 10, BurstRate: 100,
		Scale: []int{50, 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	if report.RawEnqueue <= 0 || report.RawProcess <= 0 || report.BookGo <= 0 || report.BookHTTP <= 0 || report.Send <= 0 {
		t.Errorf("a rate is not positive: %+v", report)
	}
	if report.SendSMS <= 0 || report.SendEmail <= 0 || report.NaiveSMS <= 0 || report.NaiveEmail <= 0 {
		t.Errorf("a single-channel send rate is not positive: %+v", report)
	}
	checkScale(t, report.Scale)
	if report.TasksPerBooking != 11 {
		t.Errorf("%.1f tasks per booking, want 11 (the botox protocol on both channels)", report.TasksPerBooking)
	}
	if tm := report.Timing; tm == nil || tm.Texts != 20 || tm.Early != 0 {
		t.Errorf("timing = %+v, want 20 texts, none early", tm)
	}
	if bu := report.Burst; bu == nil || bu.Routine != 200 || bu.Clinical != 10 || bu.Rate <= 0 || bu.PastDeadline != 0 || bu.RSSLate <= 0 {
		t.Errorf("burst = %+v, want 200 routine and 10 clinical texts, a rate, none past its deadline", bu)
	}
	if m := report.Memory; m == nil || m.Bookings != 50 || m.RawTasks != 550 || m.PerTask <= 0 || m.PerRawTask <= 0 {
		t.Errorf("memory = %+v", m)
	}
	var out bytes.Buffer
	if err := report.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raw asynq: enqueue", "raw asynq: process", "book through the Go package", "book through the HTTP API",
		"raw no-op processing", "Redis memory per booking (50 bookings)", "a bare asynq task", "provider call - due time", "0 early",
		"naive handler: SMS, due now -> Twilio", "aftercare: SMS only, due now -> Twilio -> recorded", "x naive SMS",
		"naive handler: email, due now -> SMTP", "aftercare: email only, due now -> SMTP -> recorded", "x naive email",
		"burst: 10 clinical texts due over 2s, behind 200 routine", "burst: 200 routine texts due in one second",
		"the limit of 100/s", "0 past deadline", "bench process RSS", "live heap less the fake Twilio's kept texts",
		"LIVE BOOKINGS", "BOOK p50", "GET p99", "CANCEL p99", "\n20 ", "\n50 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}

// checkScale checks that the scale curve has the test's two levels,
// smallest first, each with every call timed.
func checkScale(t *testing.T, levels []bench.ScaleLevel) {
	t.Helper()
	if len(levels) != 2 || levels[0].Bookings != 20 || levels[1].Bookings != 50 {
		t.Fatalf("scale = %+v, want levels 20 and 50", levels)
	}
	for _, l := range levels {
		if l.Sample != l.Bookings {
			t.Errorf("level %d: %d calls of each kind timed, want %d", l.Bookings, l.Sample, l.Bookings)
		}
		for _, lat := range []bench.Latency{l.Book, l.Get, l.Cancel} {
			if lat.P50 <= 0 || lat.P99 < lat.P50 {
				t.Errorf("level %d: latency %+v", l.Bookings, lat)
			}
		}
	}
}

func TestRunRefusesBadSizes(t *testing.T) {
	t.Parallel()
	if _, err := bench.Run(context.Background(), bench.Config{Bookings: 0, Tasks: 1, Producers: 1, Concurrency: 1}); err == nil {
		t.Error("Run with no bookings: no error")
	}
	if _, err := bench.Run(context.Background(), bench.Config{Bookings: 1, Tasks: 1, Producers: 1, Concurrency: 1, Scale: []int{10, 0}}); err == nil {
		t.Error("Run with a scale level of 0: no error")
	}
}
