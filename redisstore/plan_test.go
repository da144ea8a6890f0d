package redisstore

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
)

// samplePlans are plans as encode writes them, with notes that need
// escaping and times in several zones and precisions.
func samplePlans(t testing.TB) [][]byte {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 15, 0, 0, 123456789, ny)
	var out [][]byte
	for _, plan := range [][]planned{
		{},
		{{Step: "consent", Channel: "sms", SendAt: at, Deadline: at.Add(time.Hour)}},
		{
			{Step: "consent", Channel: "email", SendAt: at.UTC(), Deadline: at.Add(24 * time.Hour).Truncate(time.Second)},
			{Step: "reminder", Channel: "sms", SendAt: at, Deadline: at, Note: "booked after its time; this step is left out when booked late"},
			{Step: "day1", Channel: "sms", SendAt: at, Deadline: at, Note: "moved to the end of quiet hours (08:00)"},
		},
		{{Step: "day3", Channel: "sms", SendAt: at, Deadline: at, Note: `a "quoted" <note> & more`}},
		{{Step: "day3", Channel: "sms", SendAt: at, Deadline: at, Note: "línea\nnueva, señal \u2028"}},
	} {
		data, err := json.Marshal(plan)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// decodePlan gives what encoding/json gives, for any input.
func FuzzDecodePlan(f *testing.F) {
	for _, data := range samplePlans(f) {
		f.Add(data)
	}
	f.Add([]byte(`[{"step":"a","channel":"sms","send_at":"2026-12-01T15:00:00Z","deadline":"2026-12-01T25:00:00Z"}]`))
	f.Add([]byte(`[{"step":"a","channel":"sms","send_at":"2026-12-01T15:00:00Z","deadline":"2026-12-01T15:00:00Z","extra":1}]`))
	f.Add([]byte(`[{"channel":"sms","step":"a","send_at":"2026-12-01T15:00:00Z","deadline":"2026-12-01T15:00:00Z"}] `))
	f.Add([]byte("[{\"step\":\"\xff\",\"channel\":\"sms\",\"send_at\":\"2026-12-01T15:00:00Z\",\"deadline\":\"2026-12-01T15:00:00Z\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != '[' {
			return // the lines of encodePlan, not JSON (FuzzPlanLines)
		}
		got, err := decodePlan(string(data))
		var want []planned
		wantErr := json.Unmarshal(data, &want)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decodePlan error %v, encoding/json %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("decodePlan gives %d entries, encoding/json %d", len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Step != w.Step || g.Channel != w.Channel || g.Note != w.Note || !sameTime(g.SendAt, w.SendAt) || !sameTime(g.Deadline, w.Deadline) {
				t.Errorf("entry %d: decodePlan %+v, encoding/json %+v", i, g, w)
			}
		}
	})
}

// sameTime reports whether a and b are the same instant at the same offset.
func sameTime(a, b time.Time) bool {
	_, ao := a.Zone()
	_, bo := b.Zone()
	return a.Equal(b) && ao == bo
}

// The plans encode writes without escapes take the direct path.
func TestReadPlanTakesEncodedPlans(t *testing.T) {
	t.Parallel()
	for i, data := range samplePlans(t) {
		_, ok := readPlan(string(data))
		if escapes := i >= 3; ok == escapes {
			t.Errorf("plan %d: read directly %v, want %v: %s", i, ok, !escapes, data)
		}
	}
}

func BenchmarkDecodePlan(b *testing.B) {
	data := string(samplePlans(b)[2])
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodePlan(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var plan []planned
			if err := json.Unmarshal([]byte(data), &plan); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPlanLines: a plan written as lines reads back as the same messages at
// the same instants, in less than half the JSON's size; a plan whose
// fields hold a tab or a newline, and the empty plan, are written as JSON.
func TestPlanLines(t *testing.T) {
	t.Parallel()
	for i, data := range samplePlans(t) {
		var plan []planned
		if err := json.Unmarshal(data, &plan); err != nil {
			t.Fatal(err)
		}
		text, err := encodePlan(plan)
		if err != nil {
			t.Fatal(err)
		}
		if asJSON := i == 0 || i == 4; asJSON != strings.HasPrefix(text, "[") {
			t.Errorf("plan %d written as %q", i, text)
		}
		if i == 1 && 2*len(text) >= len(data) {
			t.Errorf("plan %d: %d bytes as lines, %d as JSON; want less than half", i, len(text), len(data))
		}
		got, err := decodePlan(text)
		if err != nil || len(got) != len(plan) {
			t.Fatalf("plan %d: decodePlan(%q) = %v, %v", i, text, got, err)
		}
		for j := range got {
			g, w := got[j], plan[j]
			if g.Step != w.Step || g.Channel != w.Channel || g.Note != w.Note || !g.SendAt.Equal(w.SendAt) || !g.Deadline.Equal(w.Deadline) {
				t.Errorf("plan %d entry %d: %+v, want %+v", i, j, g, w)
			}
		}
	}
}

// FuzzPlanLines: no input makes decodePlan panic, and what it reads as
// lines writes back as lines that read the same.
func FuzzPlanLines(f *testing.F) {
	f.Add("consent\tsms\t1764619200.123456789\t1764622800")
	f.Add("day1\tsms\t1764619200\t1764622800\tmoved to the end of quiet hours (08:00)\nday3\temail\t1\t2")
	f.Add("a\tb\t1.5\t2")
	f.Add("")
	f.Fuzz(func(t *testing.T, data string) {
		if strings.HasPrefix(data, "[") {
			return
		}
		plan, err := decodePlan(data)
		if err != nil {
			return
		}
		text, err := encodePlan(plan)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodePlan(text)
		if err != nil || len(again) != len(plan) {
			t.Fatalf("%q read back from %q as %v, %v", text, data, again, err)
		}
		for i := range plan {
			a, p := again[i], plan[i]
			if a.Step != p.Step || a.Channel != p.Channel || a.Note != p.Note || !a.SendAt.Equal(p.SendAt) || !a.Deadline.Equal(p.Deadline) {
				t.Fatalf("entry %d: %+v, then %+v", i, plan[i], again[i])
			}
		}
	})
}

// FuzzEncodePlan: whatever a caller puts in a plan's step, channel or note
// (a resend's reason is a Go caller's words), the plan written reads back.
func FuzzEncodePlan(f *testing.F) {
	f.Add("day1", "sms", "by front desk: she says it never came", int64(1764619200), int64(123))
	f.Add("day1", "sms", "by \xff: x", int64(1), int64(0))
	f.Add("a\tb", "email", "line\nbreak", int64(-5), int64(999999999))
	f.Fuzz(func(t *testing.T, step, channel, note string, sec, nsec int64) {
		at := time.Unix(sec%(1<<40), nsec%1_000_000_000)
		plan := []planned{{Step: step, Channel: aftercare.Channel(channel), SendAt: at, Deadline: at, Note: note}}
		text, err := encodePlan(plan)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodePlan(text)
		if err != nil || len(got) != 1 {
			t.Fatalf("encodePlan wrote %q, which reads as %v, %v", text, got, err)
		}
		if !got[0].SendAt.Equal(at) {
			t.Errorf("send_at %v read back as %v", at, got[0].SendAt)
		}
	})
}
