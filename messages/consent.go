package messages

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/aftercare/aftercare"
)

// ConsentPage renders the consent page of booking rec in the patient's
// language (or the default one, where the protocol or the templates have
// none in it).
func (r *Renderer) ConsentPage(rec *aftercare.Record) (aftercare.ConsentPage, error) {
	p, ok := r.protocols[rec.Booking.Treatment]
	if !ok {
		return aftercare.ConsentPage{}, fmt.Errorf("consent page: unknown treatment %q", rec.Booking.Treatment)
	}
	_, loc := p.ConsentIn(rec.Booking.Patient.Locale)
	loc, tmpl := r.lookup(loc, rec.Booking.Treatment, aftercare.StepConsent, "page")
	if tmpl == nil {
		return aftercare.ConsentPage{}, fmt.Errorf("consent page %s: no template consent.page.tmpl", loc)
	}
	data := r.data(rec, p, loc, r.links.ConsentURL(rec))
	var err error
	if data.Consent, err = r.consent(p, loc, data); err != nil {
		return aftercare.ConsentPage{}, err
	}
	text, err := execute(tmpl, data)
	if err != nil {
		return aftercare.ConsentPage{}, fmt.Errorf("render %s/%s: %w", loc, tmpl.Name(), err)
	}
	return aftercare.ConsentPage{
		Locale: loc, Treatment: data.Treatment, Text: text, Blocks: aftercare.Blocks(text),
		ProtocolVersion: p.Version, TemplateVersion: r.versions[loc+"/"+tmpl.Name()],
	}, nil
}

// consent renders the consent text of p in loc, or in the default locale
// if p has none in it.
func (r *Renderer) consent(p aftercare.Protocol, loc string, data Data) (aftercare.Consent, error) {
	_, loc = p.ConsentIn(loc)
	return r.consents[p.Treatment+"/"+loc](data)
}

// consentText is a protocol's consent text in one language, each part
// parsed once as a template that may name the clinic and the protocol's
// vars; calling it renders the text.
type consentText func(data Data) (aftercare.Consent, error)

// compileConsent parses the consent text c of treatment in loc.
func compileConsent(treatment, loc string, c aftercare.Consent) (consentText, error) {
	var errs []error
	where := func(field string) string { return fmt.Sprintf("protocol %s: consent.%s.%s", treatment, loc, field) }
	parse := func(field, src string) *template.Template {
		t, err := template.New(field).Option("missingkey=error").Parse(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where(field), err))
		}
		return t
	}
	parseAll := func(field string, srcs []string) []*template.Template {
		out := make([]*template.Template, len(srcs))
		for i, src := range srcs {
			out[i] = parse(fmt.Sprintf("%s[%d]", field, i), src)
		}
		return out
	}
	about, emergency := parse("about", c.About), parse("emergency", c.Emergency)
	notFor, alternatives := parseAll("not_for", c.NotFor), parseAll("alternatives", c.Alternatives)
	prepare, after := parseAll("prepare", c.Prepare), parseAll("aftercare", c.Aftercare)
	var risks [][3]*template.Template
	for i, risk := range c.Risks {
		f := fmt.Sprintf("risks[%d]", i)
		risks = append(risks, [3]*template.Template{parse(f+".name", risk.Name), parse(f+".text", risk.Text), parse(f+".action", risk.Action)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func(data Data) (aftercare.Consent, error) {
		var errs []error
		run := func(t *template.Template) string {
			var b strings.Builder
			if err := t.Execute(&b, data); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where(t.Name()), err))
			}
			return strings.TrimSpace(b.String())
		}
		runAll := func(ts []*template.Template) []string {
			out := make([]string, len(ts))
			for i, t := range ts {
				out[i] = run(t)
			}
			return out
		}
		out := aftercare.Consent{
			About: run(about), Emergency: run(emergency), NotFor: runAll(notFor), Alternatives: runAll(alternatives),
			Prepare: runAll(prepare), Aftercare: runAll(after),
		}
		for _, t := range risks {
			out.Risks = append(out.Risks, aftercare.Risk{Name: run(t[0]), Text: run(t[1]), Action: run(t[2])})
		}
		return out, errors.Join(errs...)
	}, nil
}

// When writes t in locale's words, as appointments are written, in t's
// zone.
func (r *Renderer) When(locale string, t time.Time) string {
	l, ok := locales[locale]
	if !ok {
		l = locales[aftercare.DefaultLocale]
	}
	return l.appointment(t)
}
