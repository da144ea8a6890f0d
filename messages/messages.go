package messages

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/aftercare/aftercare"
)

// Templates live in one directory per locale and are named
// TREATMENT.STEP.CHANNEL.tmpl ("en/botox.consent.sms.tmpl"), or
// STEP.CHANNEL.tmpl for a message shared by all treatments (the
// cancellation notice). An email template starts with a "Subject: ..." line
// and a blank line; its body is plain text in which a block of lines that
// all start with "- " is a list. The HTML part is built from that text with
// the same text (see toHTML), so the two parts never drift apart.
//
//go:embed templates
var builtin embed.FS

// isURL reports whether a line of an email is a web address alone: the
// HTML part makes it a link.
func isURL(line string) bool {
	return (strings.HasPrefix(line, "https://") || strings.HasPrefix(line, "http://")) && !strings.ContainsAny(line, " \t")
}

// plain is an email body as its text part shows it: without the marks of
// paragraphs that stand out in the HTML part.
func plain(body string) string {
	paras := strings.Split(body, "\n\n")
	for i, p := range paras {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(p), "! "); ok {
			paras[i] = rest
		}
	}
	return strings.Join(paras, "\n\n")
}

// Data is what templates can use.
type Data struct {
	FirstName string
	Clinic    aftercare.Clinic
	// Treatment is the protocol's title. In SMS it is empty unless the
	// clinic profile sets name_treatment_in_sms: someone else may read the
	// patient's phone.
	Treatment string
	// Vars are the protocol's vars, such as upright_hours.
	Vars map[string]string
	// Appointment is the appointment time in the patient's zone and words.
	Appointment string
	// HasEmail and HasSMS say whether the patient gets emails and texts.
	HasEmail, HasSMS bool
	// ConsentURL is the link to the booking's consent page. Like every
	// field, it is the same for every render of a version of the booking
	// (under one data key): a text in doubt is found at the provider by
	// rendering it again (see SMSTexts).
	ConsentURL string
	// Consent is the protocol's consent text in the message's language,
	// in the consent step's messages and on the consent page.
	Consent aftercare.Consent
	// In the answers to a patient's text: Within is how soon the team
	// answers ("2 hours"), OpensAt when it reads messages again.
	Within, OpensAt string
}

// locale is what differs between languages besides the templates.
type locale struct {
	appointment func(t time.Time) string
	// optOut ends the first SMS a booking sends.
	optOut string
	// fromClinic is the subject of an email made from an SMS template, for
	// a step that has no email of its own (the fallback for an undelivered
	// SMS).
	fromClinic string
	// hours writes a duration in whole hours or minutes.
	hours func(d time.Duration) string
}

var locales = map[string]locale{
	"en": {
		appointment: func(t time.Time) string { return t.Format("Mon, Jan 2 at 3:04 PM") },
		optOut:      "Reply STOP to opt out.",
		fromClinic:  "A message from %s",
		hours:       func(d time.Duration) string { return span(d, "hour", "hours", "minutes") },
	},
	"es": {
		appointment: func(t time.Time) string {
			return fmt.Sprintf("%s %d %s, %s", esDays[t.Weekday()], t.Day(), esMonths[t.Month()-1], t.Format("15:04"))
		},
		optOut:     "Baja: responda STOP.",
		fromClinic: "Un mensaje de %s",
		hours:      func(d time.Duration) string { return span(d, "hora", "horas", "minutos") },
	},
}

var (
	esDays   = [...]string{"dom", "lun", "mar", "mié", "jue", "vie", "sáb"}
	esMonths = [...]string{"ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"}
)

// Renderer renders messages. It is safe for concurrent use.
type Renderer struct {
	clinic    aftercare.Clinic
	protocols map[string]aftercare.Protocol
	sets      map[string]*template.Template // by locale
	links     Linker
	overrides []fs.FS
	// consents are the protocols' consent texts, by treatment/locale;
	// versions name each template's source, by locale/name.
	consents map[string]consentText
	versions map[string]string
	// consentFree marks the templates, as finally loaded, that never read
	// .Consent: their messages skip rendering the consent text.
	consentFree map[*template.Template]bool
}

// Linker makes the links to a booking's consent page (see package
// consent): the one messages carry now first, then those older data keys
// made, which messages sent before a key rotation carry.
type Linker interface {
	ConsentURL(rec *aftercare.Record) string
	ConsentURLs(rec *aftercare.Record) []string
}

// Option configures a Renderer.
type Option func(*Renderer)

// Links makes the consent links with l. A Renderer needs it: every
// consent message carries its link.
func Links(l Linker) Option { return func(r *Renderer) { r.links = l } }

// Overrides adds template directories (LOCALE/NAME.tmpl) read after the
// built-in ones, a later file replacing an earlier one of the same name.
func Overrides(fsys ...fs.FS) Option {
	return func(r *Renderer) { r.overrides = append(r.overrides, fsys...) }
}

// New loads the built-in templates and the overrides. It renders every
// step of every protocol on each of its channels, and every consent page,
// in every locale with sample data, so a missing template or a misspelt
// field fails at start-up, not in a patient's text.
func New(clinic aftercare.Clinic, protocols map[string]aftercare.Protocol, opts ...Option) (*Renderer, error) {
	r := &Renderer{clinic: clinic, protocols: protocols, sets: map[string]*template.Template{},
		consents: map[string]consentText{}, versions: map[string]string{}, consentFree: map[*template.Template]bool{}}
	for _, o := range opts {
		o(r)
	}
	if r.links == nil {
		return nil, errors.New("messages: no consent links; pass messages.Links")
	}
	sub, _ := fs.Sub(builtin, "templates") // cannot fail: embedded
	for _, fsys := range append([]fs.FS{sub}, r.overrides...) {
		if err := r.load(fsys); err != nil {
			return nil, err
		}
	}
	for _, set := range r.sets { // as loaded last: a file may redefine another's template
		for _, t := range set.Templates() {
			r.consentFree[t] = t.Tree != nil && !mayRead(t.Root, "Consent", true)
		}
	}
	var errs []error
	for _, p := range protocols {
		for loc, c := range p.Consent {
			text, err := compileConsent(p.Treatment, loc, c)
			errs = append(errs, err)
			r.consents[p.Treatment+"/"+loc] = text
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
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
		loc := path.Dir(file)
		if _, ok := locales[loc]; !ok {
			return fmt.Errorf("template %s: unknown locale directory %q; use one of %s", file, loc, strings.Join(aftercare.Locales(), ", "))
		}
		set := r.sets[loc]
		if set == nil {
			set = template.New(loc).Option("missingkey=error")
			r.sets[loc] = set
		}
		name := strings.TrimSuffix(path.Base(file), ".tmpl")
		if _, err := set.New(name).Parse(string(src)); err != nil {
			return fmt.Errorf("template %s: %w", file, err)
		}
		sum := sha256.Sum256(src)
		r.versions[loc+"/"+name] = "sha256:" + hex.EncodeToString(sum[:6])
	}
	return nil
}

// check renders every step of every protocol on each of its channels, and
// the cancellation notice on both, in every locale, as the first SMS (the
// longest form).
func (r *Renderer) check() error {
	var errs []error
	for _, p := range r.protocols {
		rec := sampleRecord(p.Treatment)
		for _, loc := range aftercare.Locales() {
			rec.Booking.Patient.Locale = loc
			for _, step := range Steps(p) {
				for _, ch := range step.Channels {
					if _, err := r.Render(rec, step.Name, ch, true); err != nil {
						errs = append(errs, err)
					}
				}
			}
			if _, err := r.ConsentPage(rec); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, loc := range aftercare.Locales() {
		if _, err := r.Help(loc); err != nil {
			errs = append(errs, err)
		}
		for _, kind := range aftercare.Answers() {
			if _, err := r.Answer(kind, loc, sampleTime); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, urgent := range []bool{false, true} {
		item := sampleItem(urgent)
		for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
			if _, err := r.Alert(&item, 1, ch); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Answer renders the answer of kind to a patient's text in locale (English
// where there is no template in it); opensAt is when the team reads
// messages again, for AnswerClosed.
func (r *Renderer) Answer(kind, locale string, opensAt time.Time) (string, error) {
	loc, tmpl := r.lookup(locale, "", "reply."+kind, string(aftercare.SMS))
	if tmpl == nil {
		return "", fmt.Errorf("render %s/reply.%s.sms: no template reply.%s.sms.tmpl", loc, kind, kind)
	}
	data := Data{Clinic: r.clinic, Within: locales[loc].hours(r.clinic.Replies.Within)}
	if !opensAt.IsZero() {
		zone, err := aftercare.LoadLocation(r.clinic.Timezone)
		if err != nil {
			zone = time.UTC
		}
		data.OpensAt = locales[loc].appointment(opensAt.In(zone))
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", fmt.Errorf("render %s/%s: %w", loc, tmpl.Name(), err)
	}
	return strings.TrimSpace(buf.String()), nil
}

// AlertData is what the alert templates (alert.sms.tmpl, alert.email.tmpl)
// can use: a text that needs a person, for the clinic's staff.
type AlertData struct {
	Clinic                       aftercare.Clinic
	ItemID, BookingID, FirstName string
	Urgent                       bool
	// Delivery: the item is a message that may not have reached the
	// patient, not a patient's text.
	Delivery bool
	// Round counts the alerts about the item before this one; Alert is
	// this one's number, from 1.
	Round, Alert int
	// Received is when the text came, on the clinic's clock.
	Received string
	// Text is the patient's words, empty if the clinic keeps them out of
	// alerts; Answer what they were answered; Flags the red flags named.
	Text, Answer, Flags string
	// Every is how often an urgent alert is sent again.
	Every string
}

// maxAlertText bounds the patient's words in an SMS alert; the inbox has
// them whole.
const maxAlertText = 300

// Alert renders the alert about item for the clinic's staff, round as in
// AlertData, on ch: to the care inbox by email, to the on-call phone by
// SMS. Alerts are written in the default locale.
func (r *Renderer) Alert(item *aftercare.InboxItem, round int, ch aftercare.Channel) (aftercare.Outgoing, error) {
	out := aftercare.Outgoing{Channel: ch, Locale: aftercare.DefaultLocale}
	loc, tmpl := r.lookup(aftercare.DefaultLocale, "", "alert", string(ch))
	if tmpl == nil {
		return out, fmt.Errorf("render %s/alert.%s: no template alert.%s.tmpl", loc, ch, ch)
	}
	zone, err := aftercare.LoadLocation(r.clinic.Timezone)
	if err != nil {
		zone = time.UTC
	}
	d := AlertData{
		Clinic: r.clinic, ItemID: item.ID, BookingID: item.BookingID, FirstName: item.FirstName,
		Urgent: item.Urgency == aftercare.Urgent, Delivery: item.Kind == aftercare.InboxDelivery, Round: round, Alert: round + 1,
		Received: item.ReceivedAt.In(zone).Format("Mon Jan 2 15:04 MST"),
		Answer:   item.Answer, Flags: strings.ReplaceAll(strings.Join(item.Flags, ", "), "*", ""),
		Every: locales[aftercare.DefaultLocale].hours(r.clinic.Alerts.ReescalateAfter),
	}
	if !r.clinic.Alerts.HideText || d.Delivery { // a delivery item's text is aftercare's, not the patient's
		d.Text = item.Text
		if ch == aftercare.SMS && len([]rune(d.Text)) > maxAlertText {
			d.Text = string([]rune(d.Text)[:maxAlertText]) + "..."
		}
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, d); err != nil {
		return out, fmt.Errorf("render %s/%s: %w", loc, tmpl.Name(), err)
	}
	text := strings.TrimSpace(buf.String())
	if ch == aftercare.SMS {
		out.To, out.Text = r.clinic.Alerts.OnCallPhone, text
		return out, nil
	}
	subject, body, ok := strings.Cut(text, "\n\n")
	if !ok || !strings.HasPrefix(subject, "Subject: ") {
		return out, fmt.Errorf("render %s/%s: an email template must start with a \"Subject: \" line and a blank line", loc, tmpl.Name())
	}
	out.To, out.Subject, out.Text = r.clinic.Alerts.Email, strings.TrimPrefix(subject, "Subject: "), body
	out.HTML = toHTML(loc, out.Subject, r.clinic, body)
	return out, nil
}

// span writes d in whole hours, or in minutes under an hour.
func span(d time.Duration, hour, hours, minutes string) string {
	switch {
	case d == time.Hour:
		return "1 " + hour
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d %s", d/time.Hour, hours)
	}
	return fmt.Sprintf("%d %s", int(d.Round(time.Minute)/time.Minute), minutes)
}

var sampleTime = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func sampleItem(urgent bool) aftercare.InboxItem {
	item := aftercare.InboxItem{ID: "in_1764579600000abcdefgh", Kind: aftercare.InboxReply, Status: aftercare.InboxOpen,
		Urgency: aftercare.Normal, ReceivedAt: sampleTime, BookingID: "bk_sample", FirstName: "Maximiliana",
		Text: "Is it normal that my forehead feels tight?", Answer: "Thank you, we have your message."}
	if urgent {
		item.Urgency, item.Flags = aftercare.Urgent, []string{"droop*"}
	}
	return item
}

// Help renders the answer to a patient's HELP: who is texting, how to reach
// the clinic, how to opt out (help.sms.tmpl).
func (r *Renderer) Help(locale string) (string, error) {
	loc, tmpl := r.lookup(locale, "", "help", string(aftercare.SMS))
	if tmpl == nil {
		return "", fmt.Errorf("render %s/help.sms: no template help.sms.tmpl", loc)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, Data{Clinic: r.clinic}); err != nil {
		return "", fmt.Errorf("render %s/help.sms: %w", loc, err)
	}
	return strings.TrimSpace(buf.String()), nil
}

// Steps lists the steps of p that have messages, with the cancellation
// notice on both channels.
func Steps(p aftercare.Protocol) []aftercare.Step {
	return append(slices.Clone(p.Steps), aftercare.Step{
		Name: aftercare.StepCancellation, Channels: []aftercare.Channel{aftercare.SMS, aftercare.Email},
	})
}

func sampleRecord(treatment string) *aftercare.Record {
	rec := &aftercare.Record{Booking: aftercare.Booking{
		ID: "sample", Treatment: treatment,
		AppointmentAt: time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC), DurationMinutes: 30,
		Patient: aftercare.Patient{
			FirstName: "Maximiliana", Phone: "+15555550123", Email: "patient@example.com",
			Timezone: "UTC", SMSOptIn: true, EmailOptIn: true,
		},
	}}
	rec.ID = rec.Booking.ID
	return rec
}

// Render renders step of booking rec for channel ch in the patient's
// locale, falling back to English where the locale has no template
// (Outgoing.Locale says which was used). An email of a step that has only an
// SMS template carries the SMS text under a "message from the clinic"
// subject. first marks the first SMS of the booking, which ends with how to
// opt out. The result has no ID; the caller sets it.
func (r *Renderer) Render(rec *aftercare.Record, step string, ch aftercare.Channel, first bool) (aftercare.Outgoing, error) {
	return r.render(rec, step, ch, first, r.links.ConsentURL(rec))
}

// SMSTexts returns every text the SMS of step to rec may have gone out as:
// as the booking's first SMS or not, with the consent link under each data
// key (a key rotation changes the link, not what was sent). A text in doubt
// is looked for at the provider among them.
func (r *Renderer) SMSTexts(rec *aftercare.Record, step string) ([]string, error) {
	var texts []string
	for _, link := range r.links.ConsentURLs(rec) {
		for _, first := range []bool{true, false} {
			out, err := r.render(rec, step, aftercare.SMS, first, link)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(texts, out.Text) {
				texts = append(texts, out.Text)
			}
		}
	}
	return texts, nil
}

// render renders as Render does, with link as the consent link.
func (r *Renderer) render(rec *aftercare.Record, step string, ch aftercare.Channel, first bool, link string) (aftercare.Outgoing, error) {
	out := aftercare.Outgoing{Channel: ch}
	b := &rec.Booking
	p, ok := r.protocols[b.Treatment]
	if !ok {
		return out, fmt.Errorf("render %s: unknown treatment %q", step, b.Treatment)
	}
	want := b.Patient.Locale
	if step == aftercare.StepConsent { // the language its consent text is in
		_, want = p.ConsentIn(want)
	}
	loc, tmpl := r.lookup(want, b.Treatment, step, string(ch))
	fromSMS := false
	if tmpl == nil && ch == aftercare.Email {
		loc, tmpl = r.lookup(want, b.Treatment, step, string(aftercare.SMS))
		fromSMS = true
	}
	if tmpl == nil {
		return out, fmt.Errorf("render %s/%s.%s: no template %s.%s.%s.tmpl or %s.%s.tmpl", loc, step, ch, b.Treatment, step, ch, step, ch)
	}
	out.Locale = loc
	data := r.data(rec, p, loc, link)
	if step == aftercare.StepConsent && !r.consentFree[tmpl] {
		var err error
		if data.Consent, err = r.consent(p, loc, data); err != nil {
			return out, err
		}
	}
	if ch == aftercare.SMS && !r.clinic.NameTreatmentInSMS {
		data.Treatment = ""
	}
	text, err := execute(tmpl, data)
	if err != nil {
		return out, fmt.Errorf("render %s/%s: %w", loc, tmpl.Name(), err)
	}
	if ch == aftercare.SMS {
		if text, err = r.gsmText(tmpl, data, text); err != nil {
			return out, fmt.Errorf("render %s/%s: %w", loc, tmpl.Name(), err)
		}
	}

	if ch == aftercare.SMS {
		out.To, out.Text = b.Patient.Phone, smsText(text, loc, first)
		return out, nil
	}
	out.To = b.Patient.Email
	return out, r.email(&out, tmpl, text, fromSMS)
}

// smsText is a rendered text as sent: a booking's first text ends with the
// opt-out line.
func smsText(text, loc string, first bool) string {
	if !first {
		return text
	}
	if !strings.ContainsAny(text[len(text)-1:], ".!?") {
		text += "."
	}
	return text + " " + locales[loc].optOut
}

// email fills out's subject, text and HTML from the rendered text, which
// is a "Subject: " line, a blank line and the body, or an SMS text when
// fromSMS.
func (r *Renderer) email(out *aftercare.Outgoing, tmpl *template.Template, text string, fromSMS bool) error {
	subject, body, ok := strings.Cut(text, "\n\n")
	if fromSMS {
		subject, body, ok = "Subject: "+fmt.Sprintf(locales[out.Locale].fromClinic, r.clinic.Name), text, true
	}
	if !ok || !strings.HasPrefix(subject, "Subject: ") {
		return fmt.Errorf("render %s/%s: an email template must start with a \"Subject: \" line and a blank line", out.Locale, tmpl.Name())
	}
	out.Subject = strings.TrimPrefix(subject, "Subject: ")
	out.Text = plain(body)
	out.HTML = toHTML(out.Locale, out.Subject, r.clinic, body)
	return nil
}

// data is what the templates of rec's messages in loc can use, but the
// consent text; link is the consent link.
func (r *Renderer) data(rec *aftercare.Record, p aftercare.Protocol, loc, link string) Data {
	b := &rec.Booking
	return Data{
		FirstName:   b.Patient.FirstName,
		Clinic:      r.clinic,
		Treatment:   p.TitleIn(loc),
		Vars:        p.Vars,
		Appointment: locales[loc].appointment(b.AppointmentAt.In(b.Location())),
		HasEmail:    b.Patient.EmailOptIn && b.Patient.Email != "",
		HasSMS:      b.Patient.SMSOptIn && b.Patient.Phone != "",
		ConsentURL:  link,
	}
}

func execute(tmpl *template.Template, data Data) (string, error) {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", err
	}
	return strings.TrimSpace(buf.String()), nil
}

// gsmText keeps an SMS in GSM-7 when only the patient's name takes it out:
// text is tmpl rendered with data; if it is UCS-2 but the template's own
// words are GSM-7, it is rendered again with the name spelled in GSM-7 (see
// gsmName).
func (r *Renderer) gsmText(tmpl *template.Template, data Data, text string) (string, error) {
	if _, enc := Segments(text); enc == GSM7 {
		return text, nil
	}
	name := data.FirstName
	data.FirstName = ""
	bare, err := execute(tmpl, data)
	if err != nil {
		return "", err
	}
	if _, enc := Segments(bare); enc != GSM7 {
		return text, nil // the template's words are UCS-2: the name costs nothing more
	}
	data.FirstName = gsmName(name)
	return execute(tmpl, data)
}

// lookup finds the template of a step: the treatment's own, then the shared
// one, in the locale and then in the default locale.
func (r *Renderer) lookup(loc, treatment, step, kind string) (string, *template.Template) {
	names := []string{treatment + "." + step + "." + kind, step + "." + kind}
	for _, l := range []string{loc, aftercare.DefaultLocale} {
		set := r.sets[l]
		if set == nil {
			continue
		}
		for _, name := range names {
			if t := set.Lookup(name); t != nil {
				return l, t
			}
		}
	}
	return aftercare.DefaultLocale, nil
}

// mayRead reports whether the template tree under n may read field of
// the data it runs with: it names the field, hands the data itself (dot, or
// $) to a function or a variable, or runs another template, which might.
// dotIsData says whether dot is the data there: not inside with or range.
func mayRead(n parse.Node, field string, dotIsData bool) bool {
	in := func(dotIsData bool, nodes ...parse.Node) bool {
		return slices.ContainsFunc(nodes, func(c parse.Node) bool { return mayRead(c, field, dotIsData) })
	}
	switch n := n.(type) {
	case *parse.ListNode:
		return n != nil && in(dotIsData, n.Nodes...)
	case *parse.ActionNode:
		return in(dotIsData, n.Pipe)
	case *parse.PipeNode:
		return n != nil && slices.ContainsFunc(n.Cmds, func(c *parse.CommandNode) bool { return in(dotIsData, c.Args...) })
	case *parse.IfNode:
		return in(dotIsData, n.Pipe, n.List, n.ElseList)
	case *parse.WithNode: // dot is the pipeline's value in the list
		return in(dotIsData, n.Pipe, n.ElseList) || in(false, n.List)
	case *parse.RangeNode:
		return in(dotIsData, n.Pipe, n.ElseList) || in(false, n.List)
	case *parse.FieldNode:
		return slices.Contains(n.Ident, field)
	case *parse.ChainNode:
		return slices.Contains(n.Field, field) || in(dotIsData, n.Node)
	case *parse.VariableNode:
		return slices.Contains(n.Ident, field) || (len(n.Ident) == 1 && n.Ident[0] == "$")
	case *parse.DotNode:
		return dotIsData
	case *parse.TemplateNode:
		return true
	}
	return false
}
