package aftercare

import "time"

// Protocol is the message timeline of one treatment. Protocols are data,
// loaded from files at start-up (see the protocol package), so a clinic can
// add a treatment or change an offset without a new build.
type Protocol struct {
	Treatment string `yaml:"treatment"`
	// Title names the treatment in messages ("anti-wrinkle injections");
	// Titles, by locale, in the patient's language (Title where a locale
	// has none).
	Title  string            `yaml:"title"`
	Titles map[string]string `yaml:"titles"`
	// Version names this wording of the protocol in consent records: the
	// file's own, or else a digest of the file (set by the loader).
	Version string `yaml:"version"`
	// Consent is, by locale, the full consent text: what the patient reads
	// on the consent page and in the consent email.
	Consent map[string]Consent `yaml:"consent"`
	// Vars are values templates may use, such as how long to stay upright.
	Vars  map[string]string `yaml:"vars"`
	Steps []Step            `yaml:"steps"`
	// RedFlags are this treatment's own phrases (by locale) that make a
	// patient's text urgent, besides those shared by every treatment.
	RedFlags map[string][]string `yaml:"red_flags"`
}

// Step is one message of a protocol, sent on each listed channel the
// patient opted into.
type Step struct {
	Name     string    `yaml:"step"`
	Channels []Channel `yaml:"channels"`
	// When the message is due.
	When TimeRule `yaml:"when"`
	// Deadline is the send-by time: past it the message is expired, not sent.
	// Its anchor may be "send", the time the step was due.
	Deadline TimeRule `yaml:"deadline"`
	// Quiet says what to do when the message falls due inside quiet hours.
	Quiet QuietPolicy `yaml:"quiet_hours"`
	// IfLate says what to do when the booking arrives after the step's time
	// but before its deadline: send now ("send") or leave it out ("skip").
	IfLate LatePolicy `yaml:"if_late"`
	// RepeatOnReschedule sends the step again after a reschedule even if the
	// earlier version was sent, because what it says depends on the
	// appointment time (a reminder). Other steps are sent once per booking.
	RepeatOnReschedule bool `yaml:"repeat_on_reschedule"`
	// Fallback is the channel that carries the step when its text cannot
	// reach the patient: no SMS opt-in, a STOP, a number that failed for
	// good, a text undelivered or expired. It goes once, before the step's
	// deadline.
	Fallback Channel `yaml:"fallback"`
	// Clinical marks a step whose message matters to the patient's safety:
	// the clinic is told if it cannot reach them.
	Clinical bool `yaml:"clinical"`
	// Priority is the queue of the step's messages: clinical ones go before
	// every routine one. Default routine.
	Priority Priority `yaml:"priority"`
}

// ValidName reports whether s can name a treatment or a step: a
// lower-case letter, then up to 31 lower-case letters, digits and
// underscores.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Priority says which queue a step's messages wait in.
type Priority string

// Priorities. A clinical message (stay upright, lie down: minutes count) is
// served before any routine one, so that the morning's reminders, however
// many, never hold it up; routine messages share the rate limit, oldest due
// first.
const (
	PriorityRoutine  Priority = "routine"
	PriorityClinical Priority = "clinical"
)

// TitleIn is the treatment's name in locale.
func (p Protocol) TitleIn(locale string) string {
	if t := p.Titles[locale]; t != "" {
		return t
	}
	return p.Title
}

// ConsentIn returns the consent text in locale, or in the default locale
// if the protocol has none in it, and the locale it is written in.
func (p Protocol) ConsentIn(locale string) (Consent, string) {
	if c, ok := p.Consent[locale]; ok {
		return c, locale
	}
	return p.Consent[DefaultLocale], DefaultLocale
}

// Consent is what a patient is told before a treatment, in one language.
// Each text is a template that may name the clinic ({{.Clinic.Phone}},
// {{.Clinic.EmergencyNumber}}) and the protocol's vars.
type Consent struct {
	// About says what the treatment is and does.
	About string `yaml:"about"`
	// Risks are the side effects, each with what to do about it.
	Risks []Risk `yaml:"risks"`
	// Emergency is the warning of what needs medical help at once.
	Emergency string `yaml:"emergency"`
	// NotFor is who should not be treated.
	NotFor []string `yaml:"not_for"`
	// Alternatives include no treatment.
	Alternatives []string `yaml:"alternatives"`
	// Prepare is how to prepare for the visit; Aftercare the patient's
	// duties after it.
	Prepare   []string `yaml:"prepare"`
	Aftercare []string `yaml:"aftercare"`
}

// Risk is a side effect of a treatment: its name, what it is, and what
// the patient does about it.
type Risk struct {
	Name   string `yaml:"name"`
	Text   string `yaml:"text"`
	Action string `yaml:"action"`
}

// Step returns the step of p named name, if there is one.
func (p Protocol) Step(name string) (Step, bool) {
	for _, s := range p.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// StepConsent is the step, by convention in every protocol, that carries
// the consent details; a patient's YES answers it.
const StepConsent = "consent"

// StepCancellation is the built-in step that tells a patient their booking
// was cancelled, when the clinic asks for it. It is part of no protocol.
const StepCancellation = "cancellation"

// TimeRule places a moment relative to an anchor, in the patient's zone:
// take the anchor, move Days calendar days, set the wall clock to At if
// given, then add Offset.
type TimeRule struct {
	Anchor Anchor        `yaml:"anchor"`
	Days   int           `yaml:"days"`
	At     string        `yaml:"at"`
	Offset time.Duration `yaml:"offset"`
}

// Anchor is a moment of a booking that times are measured from.
type Anchor string

// Anchors.
const (
	AnchorBooked       Anchor = "booked"        // when aftercare received the booking
	AnchorAppointment  Anchor = "appointment"   // appointment start
	AnchorTreatmentEnd Anchor = "treatment_end" // start plus duration
	AnchorSend         Anchor = "send"          // the step's own due time (deadlines only)
)

// QuietPolicy is what a step does when it falls due inside quiet hours.
type QuietPolicy string

// Quiet-hour policies.
const (
	QuietDefer  QuietPolicy = "defer"  // send when quiet hours end, if before the deadline
	QuietSkip   QuietPolicy = "skip"   // do not send
	QuietIgnore QuietPolicy = "ignore" // send anyway: clinical safety messages
)

// LatePolicy is what a step does when the booking arrives after its time.
type LatePolicy string

// Late policies.
const (
	LateSend LatePolicy = "send"
	LateSkip LatePolicy = "skip"
)

// Clinic is the profile of the clinic that sends the messages.
type Clinic struct {
	Name       string     `yaml:"name"`
	Phone      string     `yaml:"phone"`
	Address    string     `yaml:"address"`
	Website    string     `yaml:"website"`
	Timezone   string     `yaml:"timezone"`
	SenderName string     `yaml:"sender_name"`
	QuietHours QuietHours `yaml:"quiet_hours"`
	// TemplatesDir holds template files (LOCALE/NAME.tmpl) that replace the
	// built-in ones of the same name.
	TemplatesDir string `yaml:"templates_dir"`
	// NameTreatmentInSMS lets SMS templates name the treatment. Off by
	// default: someone else may read the patient's phone.
	NameTreatmentInSMS bool `yaml:"name_treatment_in_sms"`
	// QuietEmail applies the quiet hours to emails too; by default they
	// are a rule for texts.
	QuietEmail bool `yaml:"quiet_hours_email"`
	// EmergencyNumber is the local emergency number patients are told to
	// call when a symptom cannot wait.
	EmergencyNumber string `yaml:"emergency_number"`
	// OpeningHours are when the clinic's team reads patients' texts.
	OpeningHours OpeningHours `yaml:"opening_hours"`
	// Replies is how a patient's text is answered.
	Replies ReplyPolicy `yaml:"replies"`
	// Alerts is who is told of patients' texts.
	Alerts Alerts `yaml:"alerts"`
}

// ReplyPolicy is how a patient's text that needs a person is answered at
// once. Urgent texts and keywords are always answered.
type ReplyPolicy struct {
	// Off turns the automatic answer to other texts off.
	Off bool `yaml:"no_automatic_answer"`
	// Within is how soon, during opening hours, the team answers.
	Within time.Duration `yaml:"answer_within"`
}

// Alerts is who at the clinic is told of patients' texts, and how.
type Alerts struct {
	// Email is the care inbox that gets an email for every text that needs
	// a person.
	Email string `yaml:"email"`
	// OnCallPhone gets an SMS for every urgent text.
	OnCallPhone string `yaml:"on_call_phone"`
	// ReescalateAfter is how long an urgent item may stay open before the
	// alerts go out again (and again, until someone resolves it).
	ReescalateAfter time.Duration `yaml:"reescalate_after"`
	// HideText leaves the patient's words out of alerts: staff read them in
	// the inbox.
	HideText bool `yaml:"hide_text"`
}

// QuietFor returns the quiet hours that apply to messages on ch: the
// clinic's for texts, and for emails only if the clinic asks.
func (c Clinic) QuietFor(ch Channel) QuietHours {
	if ch == Email && !c.QuietEmail {
		return QuietHours{}
	}
	return c.QuietHours
}
