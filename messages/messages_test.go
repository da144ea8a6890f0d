package messages_test

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
)

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
	r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
	if err != nil {
		t.Fatal(err)
	}
	return r, protocols, clinic
}

// record is the stored record of booking b.
func record(b aftercare.Booking) *aftercare.Record {
	rec := &aftercare.Record{Booking: b, Fingerprint: "fp-" + b.ID}
	rec.ID = b.ID
	return rec
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

// TestGolden renders every step of every built-in protocol on each of its
// channels in every locale and compares with
// testdata/LOCALE/TREATMENT.STEP.CHANNEL.golden. The protocol's first SMS is
// rendered as the first (with the opt-out line). Run with -update after
// changing wording, and review the diff.
func TestGolden(t *testing.T) {
	r, protocols, _ := setup(t)
	for treatment, p := range protocols {
		firstSMS := ""
		for _, step := range p.Steps {
			if firstSMS == "" && slices.Contains(step.Channels, aftercare.SMS) {
				firstSMS = step.Name
			}
		}
		for _, locale := range aftercare.Locales() {
			b := sample()
			b.Treatment, b.Patient.Locale = treatment, locale
			for _, step := range messages.Steps(p) {
				for _, ch := range step.Channels {
					name := treatment + "." + step.Name + "." + string(ch)
					t.Run(locale+"/"+name, func(t *testing.T) {
						out, err := r.Render(record(b), step.Name, ch, ch == aftercare.SMS && step.Name == firstSMS)
						if err != nil {
							t.Fatal(err)
						}
						got := "To: " + out.To + "\nLocale: " + out.Locale + "\n"
						if ch == aftercare.Email {
							got += "Subject: " + out.Subject + "\n\n" + out.Text + "\n\n----- HTML -----\n" + out.HTML
						} else {
							n, enc := messages.Segments(out.Text)
							got += fmt.Sprintf("Segments: %d %s\n\n%s\n", n, enc, out.Text)
						}
						fixture.Golden(t, filepath.Join("testdata", locale, name+".golden"), got)
					})
				}
			}
		}
	}
}

// TestGoldenAnswers renders the answers to a patient's text in every locale
// and the alerts to the clinic's staff, against their golden files.
func TestGoldenAnswers(t *testing.T) {
	r, _, _ := setup(t)
	opens := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC) // 9:00 in New York
	for _, locale := range aftercare.Locales() {
		for _, kind := range aftercare.Answers() {
			t.Run(locale+"/"+kind, func(t *testing.T) {
				text, err := r.Answer(kind, locale, opens)
				if err != nil {
					t.Fatal(err)
				}
				n, enc := messages.Segments(text)
				fixture.Golden(t, filepath.Join("testdata", locale, "reply."+kind+".sms.golden"), fmt.Sprintf("Segments: %d %s\n\n%s\n", n, enc, text))
			})
		}
	}
	received := time.Date(2026, 12, 1, 22, 5, 0, 0, time.UTC)
	for _, urgency := range []aftercare.Urgency{aftercare.Normal, aftercare.Urgent} {
		item := aftercare.InboxItem{ID: "in_1764626700000abcdefgh", Urgency: urgency, ReceivedAt: received, BookingID: "bk_1001",
			FirstName: "Ana", Text: "My left eyelid is drooping, is that normal?", Answer: "Example Aesthetics: thank you, we have your message."}
		if urgency == aftercare.Urgent {
			item.Flags = []string{"droop*"}
		}
		for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
			t.Run(string(urgency)+"/alert."+string(ch), func(t *testing.T) {
				out, err := r.Alert(&item, 1, ch)
				if err != nil {
					t.Fatal(err)
				}
				got := "To: " + out.To + "\n"
				if ch == aftercare.Email {
					got += "Subject: " + out.Subject + "\n\n" + out.Text + "\n"
				} else {
					got += "\n" + out.Text + "\n"
				}
				fixture.Golden(t, filepath.Join("testdata", "en", "alert."+string(urgency)+"."+string(ch)+".golden"), got)
			})
		}
	}
}

// names are real first names from many languages, long ones among them,
// with the spelling an SMS in GSM-7 gives each ("" for none).
var namesInGSM = map[string]string{
	"Maximiliana": "Maximiliana", "Bartholomew-Alexander": "Bartholomew-Alexander",
	"María": "Maria", "María José": "Maria José", "Zoë": "Zoe", "Łukasz": "Lukasz", "Nguyễn": "Nguyen",
	"Phương Thảo": "Phuong Thao", "François": "Francois", "Siobhán": "Siobhan", "Bjørn": "Bjørn",
	"Þórunn": "Thorunn", "Jürgen": "Jürgen", "Małgorzata": "Malgorzata", "Çağlar": "Çaglar",
	"İpek": "Ipek", "Đorđe": "Dorde", "Mihăiță": "Mihaita", "Radosław": "Radoslaw", "Jiří": "Jiri",
	"Přemysl": "Premysl", "Oluwaseun": "Oluwaseun", "Hōkūlani": "Hokulani", "Søren": "Søren",
	"Ægir": "Ægir", "D’Arcy": "D'Arcy", "Ana-Sofía": "Ana-Sofia", "Dóra": "Dora", "Aoife": "Aoife",
	"Thandiwe": "Thandiwe", "Ngozi": "Ngozi", "Zoë 李": "Zoe",
	"李娜": "", "さくら": "", "Σοφία": "", "Алексей": "", "محمد": "", "प्रिया": "", "지민": "",
}

var names = slices.Sorted(maps.Keys(namesInGSM))

// TestNameSpelledInGSM: an English text keeps the name's letters GSM-7 has,
// spells the others without their accents, and leaves out a name it cannot
// spell ("Hi," rather than "Hi 李,"); a text whose own words are UCS-2
// keeps the name as written.
func TestNameSpelledInGSM(t *testing.T) {
	t.Parallel()
	r, _, _ := setup(t)
	for name, want := range namesInGSM {
		b := sample()
		b.Patient.FirstName = name
		out, err := r.Render(record(b), "day3", aftercare.SMS, false)
		if err != nil {
			t.Fatal(err)
		}
		greeting := "Hi " + want + ","
		if want == "" {
			greeting = "Hi,"
		}
		if !strings.HasPrefix(out.Text, greeting) {
			t.Errorf("%s: %q, want it to start %q", name, out.Text, greeting)
		}
	}
	b := sample()
	b.Patient.FirstName, b.Patient.Locale = "María", "es"
	out, _ := r.Render(record(b), "consent", aftercare.SMS, false)
	if _, enc := messages.Segments(out.Text); enc != messages.UCS2 || !strings.HasPrefix(out.Text, "Hola María:") {
		t.Errorf("a Spanish text in UCS-2 anyway: %q (%s), want the name as written", out.Text, enc)
	}
	email, _ := r.Render(record(b), "consent", aftercare.Email, false)
	if !strings.Contains(email.Text, "María") {
		t.Errorf("an email spells the name as written: %q", email.Text)
	}
}

// TestSMSBudget renders every SMS of every built-in protocol in every
// locale with long, realistic names from many languages and a clinic's
// real-length consent link, as the first SMS (the longest form). The budget
// is three parts, one more in UCS-2 (Spanish needs "á", "í", "ó", "ú": 268
// characters in four parts against 459 in three), and one more for the
// consent text, which carries the link and the emergency warning. English
// must stay in GSM-7 (a stray curly quote or dash, or a name's "á", would
// double the cost).
func TestSMSBudget(t *testing.T) {
	t.Parallel()
	protocols, err := protocol.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	// Long but real names; a clinic whose are longer sees the cost of each
	// message in "aftercare preview".
	clinics := map[string]aftercare.Clinic{
		"en": {Name: "Serrano Aesthetic Medicine Clinic", Phone: "+1 (555) 555-0100", Address: "1250 Avenue of the Americas, Suite 400, New York",
			Timezone: "America/New_York", EmergencyNumber: "911", Replies: aftercare.ReplyPolicy{Within: 2 * time.Hour}},
		"es": {Name: "Clínica Estética Peñalver", Phone: "+34 912 345 678", Address: "Calle de Serrano 45, Madrid",
			Timezone: "Europe/Madrid", EmergencyNumber: "112", Replies: aftercare.ReplyPolicy{Within: 90 * time.Minute}},
	}
	sites := map[string]string{"en": "https://care.serranoaestheticclinic.com", "es": "https://citas.clinicaesteticapenalver.es"}
	for locale, clinic := range clinics {
		links, err := consent.NewLinks(sites[locale], nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := messages.New(clinic, protocols, messages.Links(links))
		if err != nil {
			t.Fatal(err)
		}
		for treatment, p := range protocols {
			for _, name := range names {
				for _, email := range []bool{true, false} { // texts differ with an email and without
					b := sample()
					b.Treatment, b.Patient.Locale, b.Patient.FirstName = treatment, locale, name
					b.Patient.EmailOptIn = email
					b.ID = "apt-2026-09-004817"                                      // a clinic's own ids can be long: the link holds it
					b.AppointmentAt = time.Date(2026, 9, 30, 20, 30, 0, 0, time.UTC) // long month and day names
					for _, step := range messages.Steps(p) {
						if !slices.Contains(step.Channels, aftercare.SMS) {
							continue
						}
						out, err := r.Render(record(b), step.Name, aftercare.SMS, true)
						if err != nil {
							t.Fatal(err)
						}
						n, enc := messages.Segments(out.Text)
						budget := 3
						if enc == messages.UCS2 {
							budget++
						}
						if step.Name == aftercare.StepConsent {
							budget++
						}
						if n > budget {
							t.Errorf("%s/%s.%s.sms for %s: %d parts (%s, %d characters): %s", locale, treatment, step.Name, name, n, enc, len([]rune(out.Text)), out.Text)
						}
						if locale == "en" && enc != messages.GSM7 {
							t.Errorf("%s/%s.%s.sms for %s fell into UCS-2: %s", locale, treatment, step.Name, name, out.Text)
						}
					}
				}
			}
		}
		// The answers to a patient's text, and HELP's.
		texts := map[string]string{}
		for _, kind := range aftercare.Answers() {
			if texts[kind], err = r.Answer(kind, locale, time.Date(2026, 9, 30, 13, 0, 0, 0, time.UTC)); err != nil {
				t.Fatal(err)
			}
		}
		if texts["help"], err = r.Help(locale); err != nil {
			t.Fatal(err)
		}
		for kind, text := range texts {
			n, enc := messages.Segments(text)
			if n > 3 || (locale == "en" && enc != messages.GSM7) {
				t.Errorf("%s answer %s: %d parts (%s): %s", locale, kind, n, enc, text)
			}
		}
	}
}

func TestOptOutOnFirstSMSOnly(t *testing.T) {
	t.Parallel()
	r, _, _ := setup(t)
	b := sample()
	first, _ := r.Render(record(b), "day3", aftercare.SMS, true)
	later, _ := r.Render(record(b), "day3", aftercare.SMS, false)
	if !strings.HasSuffix(first.Text, "Reply STOP to opt out.") || strings.Contains(later.Text, "STOP") {
		t.Errorf("first: %q\nlater: %q", first.Text, later.Text)
	}
	b.Patient.Locale = "es"
	es, _ := r.Render(record(b), "day3", aftercare.SMS, true)
	if !strings.HasSuffix(es.Text, "Baja: responda STOP.") || es.Locale != "es" {
		t.Errorf("es first: %q", es.Text)
	}
}

func TestTreatmentNamedInSMSOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	_, protocols, clinic := setup(t)
	b := sample()
	for _, allow := range []bool{false, true} {
		clinic.NameTreatmentInSMS = allow
		r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Render(record(b), "reminder", aftercare.SMS, false)
		if err != nil {
			t.Fatal(err)
		}
		if named := strings.Contains(out.Text, "botulinum"); named != allow {
			t.Errorf("name_treatment_in_sms %v: %q", allow, out.Text)
		}
	}
}

func TestHTMLEscapes(t *testing.T) {
	t.Parallel()
	r, _, _ := setup(t)
	b := sample()
	b.Patient.FirstName = `<script>alert("x")</script>`
	out, err := r.Render(record(b), "consent", aftercare.Email, false)
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
	rendered := 0
	for _, step := range p.Steps {
		if !slices.Contains(step.Channels, aftercare.SMS) {
			continue
		}
		out, err := r.Render(record(b), step.Name, aftercare.SMS, true)
		if err != nil {
			t.Fatalf("%s SMS: %v", step.Name, err)
		}
		if out.Text == "" {
			t.Errorf("%s SMS is empty", step.Name)
		}
		rendered++
		for _, word := range []string{"botox", "botulinum", "toxin"} {
			if strings.Contains(strings.ToLower(out.Text), word) {
				t.Errorf("%s SMS names the treatment (%q): someone else may read the phone", step.Name, word)
			}
		}
	}
	if rendered == 0 {
		t.Error("no SMS rendered: the botox protocol has SMS steps")
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
		{"syntax", "en/botox.day3.sms.tmpl", "Hi {{.FirstName", "en/botox.day3.sms.tmpl"},
		{"unknown field", "es/botox.day3.sms.tmpl", "Hola {{.FristName}}", "FristName"},
		{"unknown var", "en/botox.upright.sms.tmpl", "Stay up {{.Vars.upright_hourz}} hours", "upright_hourz"},
		{"email without subject", "en/botox.day14.email.tmpl", "Hello {{.FirstName}}", "Subject"},
		{"unknown locale", "fr/botox.day3.sms.tmpl", "Bonjour", "unknown locale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{tt.file: {Data: []byte(tt.src)}}
			_, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)), messages.Overrides(fsys))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestOverrideReplacesBuiltin(t *testing.T) {
	t.Parallel()
	_, protocols, clinic := setup(t)
	fsys := fstest.MapFS{"en/botox.day3.sms.tmpl": {Data: []byte("Hi {{.FirstName}}, call {{.Clinic.Phone}} with any worry.")}}
	r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)), messages.Overrides(fsys))
	if err != nil {
		t.Fatal(err)
	}
	b := sample()
	out, err := r.Render(record(b), "day3", aftercare.SMS, false)
	if err != nil || out.Text != "Hi Ana, call "+clinic.Phone+" with any worry." {
		t.Fatalf("Render = %q, %v", out.Text, err)
	}
}

// TestConsentTextInOverrides: a consent SMS renders without the consent
// text unless its template may read it; an override that reads it, however
// it reaches it, gets it.
func TestConsentTextInOverrides(t *testing.T) {
	t.Parallel()
	_, protocols, clinic := setup(t)
	for _, src := range []string{
		"{{.Consent.Emergency}}",
		"{{with .Consent}}{{.Emergency}}{{end}}",
		"{{$c := .Consent}}{{$c.Emergency}}",
		"{{range .Consent.Risks}}{{end}}{{if true}}{{$.Consent.Emergency}}{{end}}",
		`{{define "emergency"}}{{.Consent.Emergency}}{{end}}{{template "emergency" .}}`,
		`{{with .FirstName}}{{.}}{{end}}{{with $d := .}}{{$d.Consent.Emergency}}{{end}}`,
	} {
		fsys := fstest.MapFS{"en/botox.consent.sms.tmpl": {Data: []byte("Note: " + src)}}
		r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)), messages.Overrides(fsys))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		out, err := r.Render(record(sample()), "consent", aftercare.SMS, false)
		if err != nil || !strings.Contains(out.Text, "Serious problems are very rare") {
			t.Errorf("%s: Render = %q, %v", src, out.Text, err)
		}
	}
	// The data handed whole to a function, and a template another file
	// redefines, count too.
	for _, fsys := range []fstest.MapFS{
		{"en/botox.consent.sms.tmpl": {Data: []byte(`Note: {{printf "%v" .}}`)}},
		{"en/shared.tmpl": {Data: []byte(`{{define "botox.consent.sms"}}Note: {{.Consent.Emergency}}{{end}}`)}},
	} {
		r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)), messages.Overrides(fsys))
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Render(record(sample()), "consent", aftercare.SMS, false)
		if err != nil || !strings.Contains(out.Text, "Serious problems are very rare") {
			t.Errorf("%v: Render = %.80q, %v", fsys, out.Text, err)
		}
	}
}

func BenchmarkRenderEmail(b *testing.B) { benchmarkRender(b, aftercare.Email) }

func BenchmarkRenderSMS(b *testing.B) { benchmarkRender(b, aftercare.SMS) }

// benchmarkRender renders the consent, the longest message, on ch.
func benchmarkRender(b *testing.B, ch aftercare.Channel) {
	protocols, _ := protocol.Builtin()
	clinic, _ := config.LoadClinic("")
	r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(b)))
	if err != nil {
		b.Fatal(err)
	}
	bk := sample()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(record(bk), "consent", ch, ch == aftercare.SMS); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConsentInOneLanguage: a patient whose language the protocol's
// consent text lacks gets the consent email and page wholly in the default
// language, not a Spanish email around English risks.
func TestConsentInOneLanguage(t *testing.T) {
	t.Parallel()
	protocols, clinic := fixture.Protocols(t), fixture.Clinic(t)
	p := protocols["botox"]
	p.Consent = map[string]aftercare.Consent{"en": p.Consent["en"]}
	protocols["botox"] = p
	r, err := messages.New(clinic, protocols, messages.Links(fixture.Links(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := sample()
	b.Patient.Locale = "es"
	email, err := r.Render(record(b), aftercare.StepConsent, aftercare.Email, false)
	if err != nil {
		t.Fatal(err)
	}
	page, err := r.ConsentPage(record(b))
	if err != nil {
		t.Fatal(err)
	}
	if email.Locale != "en" || page.Locale != "en" || !strings.Contains(email.Text, "Drooping eyelid") || strings.Contains(email.Text, "Hola") {
		t.Errorf("email in %s, page in %s:\n%s", email.Locale, page.Locale, email.Text)
	}
	b.Patient.Locale = "en"
	if sms, _ := r.Render(record(b), "day1", aftercare.SMS, false); sms.Locale != "en" {
		t.Errorf("day1 in %s", sms.Locale)
	}
}

// TestSMSTextsAcrossKeyRotation: a consent text sent before the data key
// rotated is still among the texts its message may have gone out as, so a
// text in doubt is found at the provider and not sent again.
func TestSMSTextsAcrossKeyRotation(t *testing.T) {
	t.Parallel()
	protocols, clinic := fixture.Protocols(t), fixture.Clinic(t)
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	renderer := func(keys ...[]byte) *messages.Renderer {
		links, err := consent.NewLinks(fixture.PublicURL, keys)
		if err != nil {
			t.Fatal(err)
		}
		r, err := messages.New(clinic, protocols, messages.Links(links))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rec := record(sample())
	before, err := renderer(oldKey).Render(rec, aftercare.StepConsent, aftercare.SMS, true)
	if err != nil {
		t.Fatal(err)
	}
	after := renderer(newKey, oldKey)
	now, _ := after.Render(rec, aftercare.StepConsent, aftercare.SMS, true)
	texts, err := after.SMSTexts(rec, aftercare.StepConsent)
	if err != nil {
		t.Fatal(err)
	}
	if now.Text == before.Text || !slices.Contains(texts, before.Text) || !slices.Contains(texts, now.Text) || len(texts) != 4 {
		t.Errorf("texts after rotation %q; want the one sent before, %q, among them", texts, before.Text)
	}
}
