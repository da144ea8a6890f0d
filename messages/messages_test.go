package messages_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func setup(t *testing.T) (*messages.Renderer, map[string]aftercare.Protocol, aftercare.Clinic) {
	t.Helper()
	protocols, err := protocol.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	clinic, err := config.LoadClinic("")
	if err != nil {
		t.Fatal(err)
	}
	r, err := messages.New(clinic, protocols)
	if err != nil {
		t.Fatal(err)
	}
	return r, protocols, clinic
}

func sample() aftercare.Booking {
	b := aftercare.Booking{
		ID: "bk_1001", Treatment: "botox", DurationMinutes: 30,
		AppointmentAt: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC),
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: "America/New_York", Locale: "en", SMSOptIn: true, EmailOptIn: true},
	}
	return b
}

// TestGolden renders every step of the default protocol on each of its
// channels and compares with testdata/STEP.CHANNEL.golden. Run with -update
// after changing wording.
func TestGolden(t *testing.T) {
	r, protocols, _ := setup(t)
	b := sample()
	steps := append(protocols["botox"].Steps, aftercare.Step{
		Name: aftercare.StepCancellation, Channels: []aftercare.Channel{aftercare.SMS, aftercare.Email},
	})
	for _, step := range steps {
		for _, ch := range step.Channels {
			name := step.Name + "." + string(ch)
			t.Run(name, func(t *testing.T) {
				out, err := r.Render(&b, step.Name, ch)
				if err != nil {
					t.Fatal(err)
				}
				got := "To: " + out.To + "\n"
				if ch == aftercare.Email {
					got += "Subject: " + out.Subject + "\n\n" + out.Text + "\n\n----- HTML -----\n" + out.HTML
				} else {
					got += "\n" + out.Text + "\n"
				}
				path := filepath.Join("testdata", "en", name+".golden")
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./messages -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from %s:\n%s", name, path, got)
				}
			})
		}
	}
}

func TestHTMLEscapes(t *testing.T) {
	t.Parallel()
	r, _, _ := setup(t)
	b := sample()
	b.Patient.FirstName = `<script>alert("x")</script>`
	out, err := r.Render(&b, "consent", aftercare.Email)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.HTML, "<script>") {
		t.Error("HTML part contains an unescaped patient name")
	}
	if !strings.Contains(out.HTML, "<ul") || !strings.Contains(out.HTML, "<li") {
		t.Error("HTML part has no list for the risks")
	}
}

func TestSMSLeavesOutTreatment(t *testing.T) {
	t.Parallel()
	r, protocols, _ := setup(t)
	b := sample()
	p := protocols["botox"]
	for _, step := range p.Steps {
		out, err := r.Render(&b, step.Name, aftercare.SMS)
		if err != nil {
			continue // step has no SMS
		}
		for _, word := range []string{"botox", "botulinum", "toxin"} {
			if strings.Contains(strings.ToLower(out.Text), word) {
				t.Errorf("%s SMS names the treatment (%q): someone else may read the phone", step.Name, word)
			}
		}
	}
}

// TestNewRejectsBadTemplates: a template that does not parse, uses a field
// that does not exist, or an email without a subject fails at start-up.
func TestNewRejectsBadTemplates(t *testing.T) {
	t.Parallel()
	_, protocols, clinic := setup(t)
	tests := []struct {
		name, file, src, want string
	}{
		{"syntax", "en/day3.sms.tmpl", "Hi {{.FirstName", "en/day3.sms.tmpl"},
		{"unknown field", "en/day3.sms.tmpl", "Hi {{.FristName}}", "FristName"},
		{"unknown var", "en/upright.sms.tmpl", "Stay up {{.Vars.upright_hourz}} hours", "upright_hourz"},
		{"email without subject", "en/day14.email.tmpl", "Hello {{.FirstName}}", "Subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{tt.file: {Data: []byte(tt.src)}}
			_, err := messages.New(clinic, protocols, fsys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestOverrideReplacesBuiltin(t *testing.T) {
	t.Parallel()
	_, protocols, clinic := setup(t)
	fsys := fstest.MapFS{"en/day3.sms.tmpl": {Data: []byte("Hi {{.FirstName}}, call {{.Clinic.Phone}} with any worry.")}}
	r, err := messages.New(clinic, protocols, fsys)
	if err != nil {
		t.Fatal(err)
	}
	b := sample()
	out, err := r.Render(&b, "day3", aftercare.SMS)
	if err != nil || out.Text != "Hi Ana, call "+clinic.Phone+" with any worry." {
		t.Fatalf("Render = %q, %v", out.Text, err)
	}
}

func BenchmarkRenderEmail(b *testing.B) {
	protocols, _ := protocol.Builtin()
	clinic, _ := config.LoadClinic("")
	r, err := messages.New(clinic, protocols)
	if err != nil {
		b.Fatal(err)
	}
	bk := sample()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(&bk, "consent", aftercare.Email); err != nil {
			b.Fatal(err)
		}
	}
}
