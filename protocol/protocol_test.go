package protocol_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/protocol"
)

func TestBuiltin(t *testing.T) {
	t.Parallel()
	set, err := protocol.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set["botox"]
	if !ok {
		t.Fatal("no botox protocol")
	}
	var names []string
	for _, s := range p.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "consent,reminder,upright,lie_down,day1,day3,day14" {
		t.Errorf("steps = %s", got)
	}
	if p.Steps[2].Quiet != aftercare.QuietIgnore || p.Steps[3].Quiet != aftercare.QuietSkip || p.Steps[4].Quiet != aftercare.QuietDefer {
		t.Error("quiet-hour policies differ from the product timeline")
	}
	for _, s := range p.Steps { // minutes count for these two alone
		if clinical := s.Name == "upright" || s.Name == "lie_down"; clinical != (s.Priority == aftercare.PriorityClinical) {
			t.Errorf("step %s has priority %s", s.Name, s.Priority)
		}
	}
}

const valid = `treatment: filler
title: dermal filler
consent:
  en:
    about: A gel that adds volume.
    risks:
      - {name: Swelling, text: Common for a few days., action: Nothing to do.}
    emergency: Skin turning white or blue is an emergency.
    not_for: [You are pregnant.]
    alternatives: [No treatment.]
    aftercare: [Do not press the area for a day.]
steps:
  - step: check_in
    channels: [sms]
    when: {anchor: treatment_end, days: 2, at: "10:00"}
    deadline: {anchor: send, offset: 12h}
`

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, src, want string
	}{
		{"valid", "filler.yaml", valid, ""},
		{"syntax", "filler.yaml", "treatment: [filler", "filler.yaml"},
		{"unknown key", "filler.yaml", strings.Replace(valid, "deadline:", "deadlin:", 1), "deadlin"},
		{"file name", "other.yaml", valid, "must live in a file named filler.yaml"},
		{"bad treatment", "Filler.yaml", strings.Replace(valid, "treatment: filler", "treatment: Filler", 1), "treatment"},
		{"no steps", "filler.yaml", "treatment: filler\nsteps: []\n", "at least one step"},
		{"bad channel", "filler.yaml", strings.Replace(valid, "[sms]", "[fax]", 1), `unknown channel "fax"`},
		{"send anchors when", "filler.yaml", strings.Replace(valid, "anchor: treatment_end", "anchor: send", 1), "send can only anchor a deadline"},
		{"bad clock", "filler.yaml", strings.Replace(valid, `"10:00"`, `"25:00"`, 1), "24-hour clock"},
		{"no deadline", "filler.yaml", strings.Replace(valid, "    deadline: {anchor: send, offset: 12h}\n", "", 1), "deadline: anchor: required"},
		{"zero deadline", "filler.yaml", strings.Replace(valid, "offset: 12h", "offset: 0s", 1), "positive offset"},
		{"bad offset", "filler.yaml", strings.Replace(valid, "offset: 12h", "offset: twelve", 1), "filler.yaml"},
		{"bad policy", "filler.yaml", valid + "    quiet_hours: maybe\n", "quiet_hours"},
		{"bad priority", "filler.yaml", valid + "    priority: urgent\n", `priority: "urgent" is not one of routine, clinical`},
		{"bad quiet hours", "filler.yaml", valid + "    quiet_hours: wait\n", `quiet_hours: "wait" is not one of defer, skip, ignore`},
		{"bad if_late", "filler.yaml", valid + "    if_late: later\n", `if_late: "later" is not one of send, skip`},
		{"duplicate step", "filler.yaml", valid + strings.SplitAfterN(valid, "steps:\n", 2)[1], "appears twice"},
		{"no consent", "filler.yaml", strings.Replace(valid, "consent:\n  en:", "consent:\n  es:", 1), "consent.en: required"},
		{"no emergency", "filler.yaml", strings.Replace(valid, "    emergency: Skin turning white or blue is an emergency.\n", "", 1), "consent.en.emergency: required"},
		{"risk without action", "filler.yaml", strings.Replace(valid, ", action: Nothing to do.", "", 1), "consent.en.risks[0]"},
		{"consent locale", "filler.yaml", strings.Replace(valid, "consent:\n", "consent:\n  fr: {about: x}\n", 1), `consent: unknown locale "fr"`},
		{"title locale", "filler.yaml", strings.Replace(valid, "title: dermal filler\n", "title: dermal filler\ntitles: {fr: produit}\n", 1), `titles: unknown locale "fr"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, err := protocol.Load(fstest.MapFS{tt.file: {Data: []byte(tt.src)}})
			if tt.want == "" {
				if err != nil || set["filler"].Steps[0].Quiet != aftercare.QuietDefer || set["filler"].Steps[0].Priority != aftercare.PriorityRoutine {
					t.Fatalf("Load = %v, %v; want the protocol with default policies", set, err)
				}
				if v := set["filler"].Version; !strings.HasPrefix(v, "sha256:") {
					t.Errorf("Version = %q, want the file's digest", v)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParse feeds arbitrary files to the protocol loader: it must not
// panic, and what it accepts must be usable by the planner.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("treatment: x\nsteps:\n  - step: a\n    channels: [sms]\n    when: {anchor: booked, days: -1}\n    deadline: {anchor: send, offset: 1h}\n"))
	f.Add([]byte("treatment: [\n"))
	f.Add([]byte("steps: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := protocol.Parse(data)
		if err != nil {
			return
		}
		if p.Treatment == "" || len(p.Steps) == 0 {
			t.Fatalf("accepted a protocol without treatment or steps: %+v", p)
		}
		for _, s := range p.Steps {
			if len(s.Channels) == 0 || s.When.Anchor == "" || s.Deadline.Anchor == "" || s.Quiet == "" || s.IfLate == "" {
				t.Fatalf("accepted an incomplete step: %+v", s)
			}
		}
	})
}
