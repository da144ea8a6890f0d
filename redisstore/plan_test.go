package redisstore

import (
	"encoding/json"
	"testing"
	"time"
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
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
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
