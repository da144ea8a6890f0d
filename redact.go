package aftercare

import (
	"regexp"
	"strings"
)

var (
	emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
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
		return local[:1] + "•••@" + domain
	})
	return phonePattern.ReplaceAllStringFunc(s, func(num string) string {
		keep := 4
		if strings.HasPrefix(num, "+") {
			keep = 5
		}
		return num[:keep] + "•••••" + num[len(num)-2:]
	})
}
