package messages

import (
	"crypto/sha256"
	"encoding/hex"
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
	loc, tmpl := r.lookup(loc, rec.Booking.Treatment, "consent", "page")
	if tmpl == nil {
		return aftercare.ConsentPage{}, fmt.Errorf("consent page %s: no template consent.page.tmpl", loc)
	}
	data := r.data(rec, p, loc)
	var err error
	if data.Consent, err = r.consent(p, loc, data); err != nil {
		return aftercare.ConsentPage{}, err
	}
	text, err := execute(tmpl, data)
	if err != nil {
		return aftercare.ConsentPage{}, fmt.Errorf("render %s/%s: %w", loc, tmpl.Name(), err)
	}
	sum := sha256.Sum256([]byte(tmpl.Root.String()))
	return aftercare.ConsentPage{
		Locale: loc, Treatment: data.Treatment, FirstName: data.FirstName, Text: text, Blocks: aftercare.Blocks(text),
		ProtocolVersion: p.Version, TemplateVersion: "sha256:" + hex.EncodeToString(sum[:6]),
	}, nil
}

// consent renders the consent text of p in loc (each part is a template
// that may name the clinic and the protocol's vars).
func (r *Renderer) consent(p aftercare.Protocol, loc string, data Data) (aftercare.Consent, error) {
	c, _ := p.ConsentIn(loc)
	var errs []error
	one := func(field, src string) string {
		t, err := template.New(field).Option("missingkey=error").Parse(src)
		if err == nil {
			var b strings.Builder
			if err = t.Execute(&b, data); err == nil {
				return strings.TrimSpace(b.String())
			}
		}
		errs = append(errs, fmt.Errorf("protocol %s: consent.%s.%s: %w", p.Treatment, loc, field, err))
		return ""
	}
	list := func(field string, src []string) []string {
		out := make([]string, len(src))
		for i, s := range src {
			out[i] = one(fmt.Sprintf("%s[%d]", field, i), s)
		}
		return out
	}
	out := aftercare.Consent{
		About: one("about", c.About), Emergency: one("emergency", c.Emergency),
		NotFor: list("not_for", c.NotFor), Alternatives: list("alternatives", c.Alternatives),
		Prepare: list("prepare", c.Prepare), Aftercare: list("aftercare", c.Aftercare),
	}
	for i, risk := range c.Risks {
		f := fmt.Sprintf("risks[%d]", i)
		out.Risks = append(out.Risks, aftercare.Risk{
			Name: one(f+".name", risk.Name), Text: one(f+".text", risk.Text), Action: one(f+".action", risk.Action),
		})
	}
	if len(errs) > 0 {
		return out, errs[0]
	}
	return out, nil
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
