package messages

import (
	"fmt"
	"strings"

	"github.com/aftercare/aftercare"
)

// The HTML part of an email: the clinic's name over the body's blocks
// (paragraphs, headings, lists; a paragraph marked "! " stands out, a line
// that is a web address alone is a link), with inline styles, since mail
// clients drop style sheets. It is written directly rather than through
// html/template, which took half of an email's rendering time; the escaping
// is html/template's, and a test holds the two to the same bytes
// (testdata/layout.html).
const (
	htmlHead = "<!DOCTYPE html>\n<html lang=\"%s\">\n<head>\n<meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>%s</title>\n</head>\n" +
		"<body style=\"margin:0;padding:0;background:#f6f4f1;\">\n" +
		"<div style=\"max-width:560px;margin:0 auto;padding:24px;font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;color:#2b2b2b;background:#ffffff;\">\n" +
		"<p style=\"margin:0 0 16px;font-size:14px;letter-spacing:0.04em;text-transform:uppercase;color:#7a6f66;\">%s</p>\n"
	htmlTail      = "</div>\n</body>\n</html>\n"
	htmlList      = "<ul style=\"margin:0 0 16px;padding-left:20px;\">\n"
	htmlItem      = "<li style=\"margin:0 0 8px;\">"
	htmlHeading   = "<h2 style=\"margin:24px 0 8px;font-size:18px;line-height:1.3;\">"
	htmlPara      = "<p style=\"margin:0 0 16px;\">"
	htmlImportant = "<p style=\"margin:0 0 16px;padding:12px 16px;border-left:4px solid #a3432b;background:#fbefe9;\">"
	htmlLink      = "<a href=\"%s\" style=\"color:#1d4f91;\">%s</a>"
)

func toHTML(locale, subject string, clinic aftercare.Clinic, body string) string {
	var b strings.Builder
	b.Grow(len(htmlHead) + len(htmlTail) + 2*len(body)) // the frame, and the body with markup
	fmt.Fprintf(&b, htmlHead, escapeHTML(locale), escapeHTML(subject), escapeHTML(clinic.Name))
	for _, block := range aftercare.Blocks(body) {
		switch {
		case block.Items != nil:
			b.WriteString(htmlList)
			for _, item := range block.Items {
				b.WriteString(htmlItem + escapeHTML(item) + "</li>\n")
			}
			b.WriteString("</ul>\n")
		case block.Heading > 0:
			b.WriteString(htmlHeading + escapeHTML(block.Lines[0]) + "</h2>\n")
		default:
			if block.Important {
				b.WriteString(htmlImportant)
			} else {
				b.WriteString(htmlPara)
			}
			for i, line := range block.Lines {
				if i > 0 {
					b.WriteString("<br>")
				}
				if isURL(line) {
					fmt.Fprintf(&b, htmlLink, escapeHTML(normalizeURL(line)), escapeHTML(line))
				} else {
					b.WriteString(escapeHTML(line))
				}
			}
			b.WriteString("</p>\n")
		}
	}
	b.WriteString(htmlTail)
	return b.String()
}

// htmlEscaper escapes text for HTML content and quoted attributes as
// html/template does.
var htmlEscaper = strings.NewReplacer("\x00", "\uFFFD", `"`, "&#34;", "&", "&amp;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

func escapeHTML(s string) string { return htmlEscaper.Replace(s) }

// normalizeURL percent-encodes the bytes of a web address that may not
// stand in one as they are, as html/template does for an href: everything
// but letters, digits, "-._~", the reserved characters but the quote and
// parentheses, and a "%" that begins an escape.
func normalizeURL(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!#$&*+,/:;=?@[]", c) >= 0 ||
			c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02x", c)
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
