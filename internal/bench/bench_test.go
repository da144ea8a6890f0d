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
	})
	if err != nil {
		t.Fatal(err)
	}
	if report.RawEnqueue <= 0 || report.RawProcess <= 0 || report.BookGo <= 0 || report.BookHTTP <= 0 || report.Send <= 0 {
		t.Errorf("a rate is not positive: %+v", report)
	}
	if report.TasksPerBooking != 11 {
		t.Errorf("%.1f tasks per booking, want 11 (the botox protocol on both channels)", report.TasksPerBooking)
	}
	if tm := report.Timing; tm == nil || tm.Texts != 20 || tm.Early != 0 {
		t.Errorf("timing = %+v, want 20 texts, none early", tm)
	}
	if m := report.Memory; m == nil || m.Bookings != 50 || m.RawTasks != 550 || m.PerTask <= 0 || m.PerRawTask <= 0 {
		t.Errorf("memory = %+v", m)
	}
	var out bytes.Buffer
	if err := report.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raw asynq: enqueue", "raw asynq: process", "book through the Go package", "book through the HTTP API",
		"raw no-op processing", "Redis memory per booking (50 bookings)", "a bare asynq task", "provider call - due time", "0 early"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRefusesBadSizes(t *testing.T) {
	t.Parallel()
	if _, err := bench.Run(context.Background(), bench.Config{Bookings: 0, Tasks: 1, Producers: 1, Concurrency: 1}); err == nil {
		t.Error("Run with no bookings: no error")
	}
}
