package aftercare

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// OpeningHours are the hours of each day of the week, in the clinic's time
// zone, keyed by the day's first three letters in lower case ("mon") and
// written "09:00-18:00". A day not listed is closed.
type OpeningHours map[string]string

var weekdays = [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Check reports what is wrong with h, if anything.
func (h OpeningHours) Check() error {
	var errs []string
	for day, span := range h {
		if !slices.Contains(weekdays[:], day) {
			errs = append(errs, fmt.Sprintf("%q is not a day; use mon, tue, wed, thu, fri, sat, sun", day))
			continue
		}
		if _, _, err := parseSpan(span); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", day, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// parseSpan reads "09:00-18:00" as minutes of the day.
func parseSpan(span string) (open, close int, err error) {
	from, to, ok := strings.Cut(span, "-")
	fh, fm, ferr := ParseClock(strings.TrimSpace(from))
	th, tm, terr := ParseClock(strings.TrimSpace(to))
	if !ok || ferr != nil || terr != nil || th*60+tm <= fh*60+fm {
		return 0, 0, fmt.Errorf("%q is not opening hours such as 09:00-18:00", span)
	}
	return fh*60 + fm, th*60 + tm, nil
}

// Open reports whether the clinic is open at t, read on the wall clock of
// loc (the clinic's zone), and if not, when it next opens (zero if it never
// does).
func (h OpeningHours) Open(t time.Time, loc *time.Location) (bool, time.Time) {
	local := t.In(loc)
	now := local.Hour()*60 + local.Minute()
	for d := range 8 {
		day := local.AddDate(0, 0, d)
		open, close, err := parseSpan(h[weekdays[day.Weekday()]])
		if err != nil {
			continue
		}
		if d == 0 && now >= open && now < close {
			return true, t
		}
		if d > 0 || now < open {
			y, m, dd := day.Date()
			return false, time.Date(y, m, dd, open/60, open%60, 0, 0, loc)
		}
	}
	return false, time.Time{}
}
