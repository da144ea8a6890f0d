package aftercare

import (
	"log/slog"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Booking is an appointment the clinic backend hands to aftercare.
type Booking struct {
	ID              string    `json:"id"`
	Treatment       string    `json:"treatment"`
	AppointmentAt   time.Time `json:"appointment_at"`
	DurationMinutes int       `json:"duration_minutes"`
	Patient         Patient   `json:"patient"`
	// TreatedAt is when the treatment actually ended, as the clinic
	// reported it; nil until then.
	TreatedAt *time.Time `json:"treated_at,omitempty"`
}

// Patient holds the contact details of the person treated. It is the only
// patient data aftercare keeps, and it lives only in the booking record:
// never in task payloads, logs, metrics or the dashboard.
type Patient struct {
	FirstName  string `json:"first_name"`
	Phone      string `json:"phone,omitempty"`
	Email      string `json:"email,omitempty"`
	Timezone   string `json:"timezone"`
	Locale     string `json:"locale,omitempty"`
	SMSOptIn   bool   `json:"sms_opt_in"`
	EmailOptIn bool   `json:"email_opt_in"`
}

// LogValue keeps contact details out of logs even when a Patient is logged
// whole by mistake.
func (p Patient) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("phone", Redact(p.Phone)),
		slog.String("email", Redact(p.Email)),
		slog.String("timezone", p.Timezone),
		slog.String("locale", p.Locale),
	)
}

// DefaultLocale is the language of a patient who names none, and of a
// message with no template in the patient's language.
const DefaultLocale = "en"

// locales are the languages messages are written in.
var locales = []string{DefaultLocale, "es"}

// Locales returns the languages messages are written in, the default first.
func Locales() []string { return slices.Clone(locales) }

// knownLocale reports whether messages are written in locale l.
func knownLocale(l string) bool { return slices.Contains(locales, l) }

// maxDurationMinutes bounds duration_minutes; no injection visit lasts a day.
const maxDurationMinutes = 24 * 60

var bookingID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether id is a valid booking id.
func ValidID(id string) bool { return bookingID.MatchString(id) }

// Location returns the patient's time zone. Call it on a validated booking.
func (b *Booking) Location() *time.Location {
	loc, err := LoadLocation(b.Patient.Timezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// zones caches time zones by name: time.LoadLocation reads and parses the
// zone file on every call.
var zones sync.Map

// LoadLocation is time.LoadLocation with a cache.
func LoadLocation(name string) (*time.Location, error) {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}

// End is when the treatment ended (TreatedAt), or else when it is planned
// to end.
func (b *Booking) End() time.Time {
	if b.TreatedAt != nil {
		return *b.TreatedAt
	}
	return b.AppointmentAt.Add(time.Duration(b.DurationMinutes) * time.Minute)
}

// Channels returns the channels the patient opted into and can be reached on.
func (b *Booking) Channels() []Channel {
	var chs []Channel
	if b.Patient.SMSOptIn && b.Patient.Phone != "" {
		chs = append(chs, SMS)
	}
	if b.Patient.EmailOptIn && b.Patient.Email != "" {
		chs = append(chs, Email)
	}
	return chs
}

// Normalize validates b in place and rewrites its fields to canonical form:
// the phone number in E.164, the email address bare and the locale in lower
// case. The error, if any, is an EINVALID *Error naming every bad field.
// Whether the treatment is known is the caller's check: it depends on the
// protocols loaded.
func (b *Booking) Normalize() error {
	var fs Fields
	if !ValidID(b.ID) {
		fs.Add("id", "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
	}
	b.Treatment = strings.TrimSpace(b.Treatment)
	if b.Treatment == "" {
		fs.Add("treatment", "is required, for example \"botox\"")
	}
	if b.AppointmentAt.IsZero() {
		fs.Add("appointment_at", "is required, as an RFC 3339 time such as 2026-12-01T15:00:00-05:00")
	} else if y := b.AppointmentAt.Year(); y < 2000 || y > 2100 {
		fs.Add("appointment_at", "is in the year %d; check the date", y)
	}
	if b.DurationMinutes < 0 || b.DurationMinutes > maxDurationMinutes {
		fs.Add("duration_minutes", "must be between 0 and %d", maxDurationMinutes)
	}
	b.Patient.normalize(&fs)
	if err := fs.Err("the booking is not valid"); err != nil {
		return err
	}
	// One instant, one spelling: the same appointment written with another
	// UTC offset is the same booking.
	b.AppointmentAt = b.AppointmentAt.In(b.Location())
	return nil
}

func (p *Patient) normalize(fs *Fields) {
	p.FirstName = strings.TrimSpace(p.FirstName)
	switch {
	case p.FirstName == "":
		fs.Add("patient.first_name", "is required; it opens every message")
	case len(p.FirstName) > 64:
		fs.Add("patient.first_name", "must be at most 64 bytes")
	case !Printable(p.FirstName):
		fs.Add("patient.first_name", "must be a name, without control characters (line breaks, tabs) or direction overrides")
	}

	if p.Phone != "" {
		e164, err := NormalizePhone(p.Phone)
		if err != nil {
			fs.Add("patient.phone", "%v", err)
		} else {
			p.Phone = e164
		}
	}
	if p.Email != "" {
		if addr, ok := plainAddress(p.Email); ok {
			p.Email = addr
		} else {
			fs.Add("patient.email", "must be a plain address such as ana@example.com")
		}
	}

	if p.Timezone == "" {
		fs.Add("patient.timezone", "is required, as an IANA name such as America/New_York")
	} else if _, err := LoadLocation(p.Timezone); err != nil || !placeZone(p.Timezone) {
		fs.Add("patient.timezone", "unknown time zone %q; use an IANA name such as Europe/Madrid", p.Timezone)
	}

	p.Locale = strings.ToLower(strings.TrimSpace(p.Locale))
	if p.Locale == "" {
		p.Locale = DefaultLocale
	} else if !knownLocale(p.Locale) {
		fs.Add("patient.locale", "must be one of %s", strings.Join(locales, ", "))
	}

	switch {
	case p.SMSOptIn && p.Phone == "":
		fs.Add("patient.phone", "is required when sms_opt_in is true")
	case p.EmailOptIn && p.Email == "":
		fs.Add("patient.email", "is required when email_opt_in is true")
	case !p.SMSOptIn && !p.EmailOptIn:
		fs.Add("patient", "needs at least one channel: set sms_opt_in or email_opt_in to true")
	}
}

// Printable reports whether s holds no control characters (line breaks,
// tabs, NUL) and no bidirectional overrides, which could hide what a
// message or a record really says.
func Printable(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// plainAddress returns addr as a bare address, if it is one that can be
// delivered: no display name, a dotted domain, no quoted or spaced local
// part, and within the lengths mail allows (64 for the local part, 254 in
// all).
func plainAddress(raw string) (string, bool) {
	addr, err := mail.ParseAddress(strings.TrimSpace(raw))
	if err != nil || addr.Name != "" {
		return "", false
	}
	local, domain, ok := strings.Cut(addr.Address, "@")
	switch {
	case !ok, len(addr.Address) > 254, len(local) > 64, !strings.Contains(domain, "."),
		strings.ContainsAny(local, "\" \t"), !Printable(addr.Address):
		return "", false
	}
	return addr.Address, true
}

// placeZone reports whether name is a zone a patient can live in: not one
// of the tz database's names kept for old systems, whose rules are no
// place's ("EST", "EST5EDT", "Factory", "posixrules", "posix/...").
func placeZone(name string) bool {
	if strings.HasPrefix(name, "posix/") || strings.HasPrefix(name, "right/") || strings.HasPrefix(name, "SystemV/") {
		return false
	}
	switch name {
	case "Local", "Factory", "posixrules", "localtime", "EST", "MST", "HST", "EST5EDT", "CST6CDT", "MST7MDT", "PST8PDT", "CET", "EET", "MET", "WET":
		return false
	}
	return true
}

// NormalizePhone parses a phone number written in E.164 ("+15555550123",
// spaces and punctuation allowed) and returns it in E.164 form, or an error
// that says what is wrong with it.
func NormalizePhone(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if !strings.HasPrefix(s, "+") && !strings.HasPrefix(s, "00") {
		return "", Errorf(EINVALID, "must be in international form with a country code, such as +15555550123")
	}
	num, err := phonenumbers.Parse(s, "")
	if err != nil {
		return "", Errorf(EINVALID, "is not a phone number; write it as +<country code><number>, such as +15555550123")
	}
	if !phonenumbers.IsPossibleNumber(num) {
		return "", Errorf(EINVALID, "has the wrong number of digits for its country")
	}
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.FIXED_LINE, phonenumbers.PAGER, phonenumbers.VOIP, phonenumbers.UAN,
		phonenumbers.VOICEMAIL, phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST:
		return "", Errorf(EINVALID, "cannot receive text messages (it is not a mobile number)")
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}
