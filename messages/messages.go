package messages

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"path"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/aftercare/aftercare"
)

// Templates are named STEP.CHANNEL.tmpl and live in one directory per
// locale ("en/consent.sms.tmpl"). An email template starts with a
// "Subject: ..." line and a blank line; its body is plain text in which a
// block of lines that all start with "- " is a list. The HTML part is built
// from that text with layout.html, so the two parts never drift apart.
//
//go:embed templates
var builtin embed.FS

//go:embed layout.html
var layoutSource string

var layout = htmltemplate.Must(htmltemplate.New("layout").Parse(layoutSource))

// Data is what templates can use.
type Data struct {
	FirstName string
	Clinic    aftercare.Clinic
	// Treatment is the protocol's title. SMS templates leave it out: someone
	// else may read the patient's phone.
	Treatment string
	// Vars are the protocol's vars, such as upright_hours.
	Vars map[string]string
	// Appointment is the appointment time in the patient's zone and words.
	Appointment string
	// HasEmail is true if the patient also gets emails.
	HasEmail bool
}

// appointmentLayout formats the appointment time, per locale.
var appointmentLayout = map[string]string{
	"en": "Mon, Jan 2 at 3:04 PM",
}

// Renderer renders messages. It is safe for concurrent use.
type Renderer struct {
	clinic    aftercare.Clinic
	protocols map[string]aftercare.Protocol
	locales   map[string]*template.Template
}

// New loads the built-in templates, then those in each of overrides (same
// layout: LOCALE/STEP.CHANNEL.tmpl), a later file replacing an earlier one of
// the same name. It checks that every step and channel of every protocol has
// an English template and that every template renders with sample data, so a
// missing template or a misspelt field fails at start-up, not in a patient's
// text.
func New(clinic aftercare.Clinic, protocols map[string]aftercare.Protocol, overrides ...fs.FS) (*Renderer, error) {
	r := &Renderer{clinic: clinic, protocols: protocols, locales: map[string]*template.Template{}}
	sub, _ := fs.Sub(builtin, "templates") // cannot fail: embedded
	for _, fsys := range append([]fs.FS{sub}, overrides...) {
		if err := r.load(fsys); err != nil {
			return nil, err
		}
	}
	if r.locales[aftercare.Locales[0]] == nil {
		return nil, fmt.Errorf("messages: no %s templates", aftercare.Locales[0])
	}
	return r, r.check()
}

func (r *Renderer) load(fsys fs.FS) error {
	files, err := fs.Glob(fsys, "*/*.tmpl")
	if err != nil {
		return err
	}
	for _, file := range files {
		src, err := fs.ReadFile(fsys, file)
		if err != nil {
			return err
		}
		locale := path.Dir(file)
		set := r.locales[locale]
		if set == nil {
			set = template.New(locale).Option("missingkey=error")
			r.locales[locale] = set
		}
		name := strings.TrimSuffix(path.Base(file), ".tmpl")
		if _, err := set.New(name).Parse(string(src)); err != nil {
			return fmt.Errorf("template %s: %w", file, err)
		}
	}
	return nil
}

// check renders every step of every protocol on each of its channels, and
// the cancellation notice on both, in every loaded locale.
func (r *Renderer) check() error {
	var errs []error
	for _, p := range r.protocols {
		b := sampleBooking(p.Treatment)
		steps := append(slices.Clone(p.Steps), aftercare.Step{
			Name: aftercare.StepCancellation, Channels: []aftercare.Channel{aftercare.SMS, aftercare.Email},
		})
		for _, step := range steps {
			for _, ch := range step.Channels {
				for locale := range r.locales {
					b.Patient.Locale = locale
					if _, err := r.Render(&b, step.Name, ch); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

func sampleBooking(treatment string) aftercare.Booking {
	return aftercare.Booking{
		ID: "sample", Treatment: treatment,
		AppointmentAt: time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC), DurationMinutes: 30,
		Patient: aftercare.Patient{
			FirstName: "Maximiliana", Phone: "+15555550123", Email: "patient@example.com",
			Timezone: "UTC", SMSOptIn: true, EmailOptIn: true,
		},
	}
}

// Render renders step of booking b for channel ch, in the patient's locale
// (English if the locale has no template for it). The result has no ID; the
// caller sets it.
func (r *Renderer) Render(b *aftercare.Booking, step string, ch aftercare.Channel) (aftercare.Outgoing, error) {
	out := aftercare.Outgoing{Channel: ch}
	p, ok := r.protocols[b.Treatment]
	if !ok {
		return out, fmt.Errorf("render %s: unknown treatment %q", step, b.Treatment)
	}
	locale, tmpl := r.lookup(b.Patient.Locale, step+"."+string(ch))
	if tmpl == nil {
		return out, fmt.Errorf("render %s/%s.%s: no template", b.Treatment, step, ch)
	}
	format := appointmentLayout[locale]
	if format == "" {
		format = appointmentLayout["en"]
	}
	data := Data{
		FirstName:   b.Patient.FirstName,
		Clinic:      r.clinic,
		Treatment:   p.Title,
		Vars:        p.Vars,
		Appointment: b.AppointmentAt.In(b.Location()).Format(format),
		HasEmail:    b.Patient.EmailOptIn && b.Patient.Email != "",
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return out, fmt.Errorf("render %s/%s: %w", locale, tmpl.Name(), err)
	}
	text := strings.TrimSpace(buf.String())

	switch ch {
	case aftercare.SMS:
		out.To = b.Patient.Phone
		out.Text = text
	case aftercare.Email:
		out.To = b.Patient.Email
		subject, body, ok := strings.Cut(text, "\n\n")
		if !ok || !strings.HasPrefix(subject, "Subject: ") {
			return out, fmt.Errorf("render %s/%s: an email template must start with a \"Subject: \" line and a blank line", locale, tmpl.Name())
		}
		out.Subject = strings.TrimPrefix(subject, "Subject: ")
		out.Text = body
		html, err := toHTML(locale, out.Subject, r.clinic, body)
		if err != nil {
			return out, fmt.Errorf("render %s/%s as HTML: %w", locale, tmpl.Name(), err)
		}
		out.HTML = html
	}
	return out, nil
}

// lookup finds template name in locale, falling back to the default locale.
func (r *Renderer) lookup(locale, name string) (string, *template.Template) {
	if set := r.locales[locale]; set != nil {
		if t := set.Lookup(name); t != nil {
			return locale, t
		}
	}
	def := aftercare.Locales[0]
	return def, r.locales[def].Lookup(name)
}

// block is a paragraph (Lines) or a list (Items) of an email body.
type block struct {
	Lines []string
	Items []string
}

func toHTML(locale, subject string, clinic aftercare.Clinic, body string) (string, error) {
	var blocks []block
	for _, para := range strings.Split(body, "\n\n") {
		lines := strings.Split(strings.TrimSpace(para), "\n")
		var b block
		for _, l := range lines {
			if item, ok := strings.CutPrefix(l, "- "); ok {
				b.Items = append(b.Items, item)
			}
		}
		if len(b.Items) != len(lines) {
			b = block{Lines: lines}
		}
		blocks = append(blocks, b)
	}
	var buf bytes.Buffer
	err := layout.Execute(&buf, map[string]any{
		"Locale": locale, "Subject": subject, "Clinic": clinic, "Blocks": blocks,
	})
	return buf.String(), err
}
