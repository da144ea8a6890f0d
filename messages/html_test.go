package messages

import (
	"html/template"
	"os"
	"strings"
	"testing"

	"github.com/aftercare/aftercare"
)

// layoutHTML renders an email's HTML part through html/template and the
// layout in testdata: the bytes toHTML must write.
func layoutHTML(t testing.TB, locale, subject string, clinic aftercare.Clinic, body string) string {
	src, err := os.ReadFile("testdata/layout.html")
	if err != nil {
		t.Fatal(err)
	}
	layout := template.Must(template.New("layout").Funcs(template.FuncMap{"isURL": isURL}).Parse(string(src)))
	var b strings.Builder
	err = layout.Execute(&b, map[string]any{"Locale": locale, "Subject": subject, "Clinic": clinic, "Blocks": aftercare.Blocks(body)})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var htmlBodies = []string{
	"Hi Ana,\n\nSee you soon.",
	"# Heading\n\n- one & two\n- <three> \"four\" 'five' +six\n\n! Call 911 now\nor us\n\nhttps://care.example.com/consent/bk_1.abc-_DEF",
	"https://example.com/a b\n\nhttps://example.com/?q=\"x\"&y='z'+(1)<2>\n\nhttp://example.com/é%20ü^`{|}\\\x00",
	"http://%\n\nhttp://a/%4\n\nhttp://a/%41%zz%4G%",
	"javascript:alert(1)\n\n<script>alert(1)</script>\n\n## Sub\n\n### Subsub\n\n- a\nb",
	"",
	"Hola Ana:\n\n¡Gracias! Llámenos al +34 600 000 000.\n\n- Ni masajes ni frotar la zona hoy.",
}

// TestHTMLAsTemplate: the HTML part is what html/template writes from the
// layout, byte for byte, escaping included.
func TestHTMLAsTemplate(t *testing.T) {
	clinic := aftercare.Clinic{Name: `Dr. O'Neil & "Partners" <Skin>+`}
	for _, body := range htmlBodies {
		want := layoutHTML(t, "en", "A <b>subject</b> & 'more'", clinic, body)
		if got := toHTML("en", "A <b>subject</b> & 'more'", clinic, body); got != want {
			t.Errorf("body %q:\ngot  %s\nwant %s", body, got, want)
		}
	}
}

func FuzzHTML(f *testing.F) {
	for _, body := range htmlBodies {
		f.Add(body, "Subject", "Clinic")
	}
	f.Fuzz(func(t *testing.T, body, subject, name string) {
		clinic := aftercare.Clinic{Name: name}
		if got, want := toHTML("es", subject, clinic, body), layoutHTML(t, "es", subject, clinic, body); got != want {
			t.Errorf("body %q subject %q name %q:\ngot  %s\nwant %s", body, subject, name, got, want)
		}
	})
}
