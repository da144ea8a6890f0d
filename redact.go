package aftercare

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

var (
	// An address is anything but spaces, angle brackets, quotes and list
	// punctuation around an "@" and a dotted domain, whatever its letters:
	// maría@example.com and rej@bücher.example are addresses too.
	emailPattern = regexp.MustCompile(`[^\s@<>()\[\]"',;:]+@[^\s@<>()\[\]"',;:]+\.[^\s@<>()\[\]"',;:.]{2,}`)
	// A phone number is "+" and digits (with the usual separators), or a run
	// of seven or more bare digits. Dates and times do not match.
	phonePattern = regexp.MustCompile(`\+\d[\d ().-]{5,}\d|\b\d{7,}\b`)
)

// Redact hides phone numbers and email addresses in s, keeping just enough to
// tell two apart when debugging: "+1555•••••23", "a•••@example.com". Every
// log line, metric label and dashboard view that could carry contact details
// goes through it.
func Redact(s string) string {
	s = emailPattern.ReplaceAllStringFunc(s, func(addr string) string {
		local, domain, _ := strings.Cut(addr, "@")
		first, _ := utf8.DecodeRuneInString(local)
		return string(first) + "•••@" + domain
	})
	return phonePattern.ReplaceAllStringFunc(s, func(num string) string {
		keep := 4
		if strings.HasPrefix(num, "+") {
			keep = 5
		}
		return num[:keep] + "•••••" + num[len(num)-2:]
	})
}
