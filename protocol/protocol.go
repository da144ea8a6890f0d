// Package protocol loads treatment protocols (the message timeline of each
// treatment) from YAML files: the built-in ones embedded in the binary and
// any a clinic adds in a directory of its own.
package protocol

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/aftercare/aftercare"
)

//go:embed builtin/*.yaml
var builtin embed.FS

// Builtin returns the protocols shipped with aftercare, keyed by treatment.
func Builtin() (map[string]aftercare.Protocol, error) {
	sub, _ := fs.Sub(builtin, "builtin") // cannot fail: the directory is embedded
	return Load(sub)
}

// BuiltinRedFlags returns the red flags shipped with aftercare that every
// treatment shares (builtin/red_flags.yaml).
func BuiltinRedFlags() (map[string][]string, error) {
	sub, _ := fs.Sub(builtin, "builtin") // cannot fail: the directory is embedded
	return LoadRedFlags(sub)
}

// RedFlagsFile is the file, beside the protocols, of the red-flag phrases
// every treatment shares, by locale (see aftercare.RedFlags). Load skips
// it.
const RedFlagsFile = "red_flags.yaml"

// LoadRedFlags reads RedFlagsFile at the root of fsys; a directory without
// one has none.
func LoadRedFlags(fsys fs.FS) (map[string][]string, error) {
	data, err := fs.ReadFile(fsys, RedFlagsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var flags map[string][]string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&flags); err != nil {
		return nil, fmt.Errorf("%s: %w", RedFlagsFile, err)
	}
	if err := validateFlags(flags); err != nil {
		return nil, fmt.Errorf("%s: %w", RedFlagsFile, err)
	}
	return flags, nil
}

// RedFlags gathers the shared red flags and every protocol's own into one
// matcher: a text is urgent if it names a red flag of any treatment (the
// patient may write from a number with no booking).
func RedFlags(protocols map[string]aftercare.Protocol, shared ...map[string][]string) *aftercare.RedFlags {
	lists := slices.Clone(shared)
	for _, p := range protocols {
		lists = append(lists, p.RedFlags)
	}
	return aftercare.NewRedFlags(lists...)
}

func validateFlags(flags map[string][]string) error {
	for loc, phrases := range flags {
		if !slices.Contains(aftercare.Locales(), loc) {
			return fmt.Errorf("red flags: unknown locale %q; use one of %v", loc, aftercare.Locales())
		}
		for i, p := range phrases {
			if aftercare.NewRedFlags(map[string][]string{loc: {p}}).Len() == 0 {
				return fmt.Errorf("red flags: %s[%d] %q has no words", loc, i, p)
			}
		}
	}
	return nil
}

// Load reads every *.yaml file at the root of fsys but RedFlagsFile as a
// protocol, keyed by treatment. Any file that does not parse or validate
// fails the whole load, with the file name (and line, for syntax errors) in
// the error.
func Load(fsys fs.FS) (map[string]aftercare.Protocol, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == RedFlagsFile })
	if len(names) == 0 {
		return nil, errors.New("no protocol files (*.yaml) found")
	}
	set := make(map[string]aftercare.Protocol, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		p, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("protocol file %s: %w", name, err)
		}
		if _, dup := set[p.Treatment]; dup {
			return nil, fmt.Errorf("protocol file %s: treatment %q is defined twice", name, p.Treatment)
		}
		if want := p.Treatment + ".yaml"; path.Base(name) != want {
			return nil, fmt.Errorf("protocol file %s: treatment %q must live in a file named %s", name, p.Treatment, want)
		}
		set[p.Treatment] = p
	}
	return set, nil
}

// Merge returns base with every protocol of over added, replacing those of
// the same treatment.
func Merge(base, over map[string]aftercare.Protocol) map[string]aftercare.Protocol {
	out := make(map[string]aftercare.Protocol, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// Parse decodes and validates one protocol file. Unknown keys are errors, so
// a misspelt "deadlin:" fails at start-up instead of silently dropping the
// deadline.
func Parse(data []byte) (aftercare.Protocol, error) {
	var p aftercare.Protocol
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return p, err
	}
	if p.Version == "" { // a wording edited without a new version still reads as another
		sum := sha256.Sum256(data)
		p.Version = "sha256:" + hex.EncodeToString(sum[:6])
	}
	return p, validate(&p)
}

// validate checks a protocol and fills in the default policies (quiet hours
// "defer", if_late "send").
func validate(p *aftercare.Protocol) error {
	if !aftercare.ValidName(p.Treatment) {
		return fmt.Errorf("treatment %q must be lower-case letters, digits and '_', starting with a letter", p.Treatment)
	}
	if len(p.Steps) == 0 {
		return errors.New("steps: a protocol needs at least one step")
	}
	seen := map[string]bool{}
	for i := range p.Steps {
		s := &p.Steps[i]
		if err := validateStep(s); err != nil {
			return fmt.Errorf("steps[%d] (%s): %w", i, s.Name, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("steps[%d]: step %q appears twice", i, s.Name)
		}
		seen[s.Name] = true
	}
	for loc, title := range p.Titles {
		if !slices.Contains(aftercare.Locales(), loc) {
			return fmt.Errorf("titles: unknown locale %q; use one of %v", loc, aftercare.Locales())
		}
		if title == "" {
			return fmt.Errorf("titles.%s: is empty; name the treatment or leave the locale out", loc)
		}
	}
	if err := validateConsent(p.Consent); err != nil {
		return err
	}
	return validateFlags(p.RedFlags)
}

// validateConsent checks that the consent text exists in the default
// locale and that every locale's is whole: the consent page shows each
// part.
func validateConsent(consent map[string]aftercare.Consent) error {
	if _, ok := consent[aftercare.DefaultLocale]; !ok {
		return fmt.Errorf("consent.%s: required: the text of the consent page and email (see the README's Protocols section)", aftercare.DefaultLocale)
	}
	for loc, c := range consent {
		if !slices.Contains(aftercare.Locales(), loc) {
			return fmt.Errorf("consent: unknown locale %q; use one of %v", loc, aftercare.Locales())
		}
		missing := func(field string) error {
			return fmt.Errorf("consent.%s.%s: required; the consent page shows it", loc, field)
		}
		switch {
		case c.About == "":
			return missing("about")
		case len(c.Risks) == 0:
			return missing("risks")
		case c.Emergency == "":
			return missing("emergency")
		case len(c.NotFor) == 0:
			return missing("not_for")
		case len(c.Alternatives) == 0:
			return missing("alternatives")
		case len(c.Aftercare) == 0:
			return missing("aftercare")
		}
		for i, r := range c.Risks {
			if r.Name == "" || r.Text == "" || r.Action == "" {
				return fmt.Errorf("consent.%s.risks[%d]: a risk needs a name, a text and an action (what the patient does about it)", loc, i)
			}
		}
	}
	return nil
}

func validateStep(s *aftercare.Step) error {
	if !aftercare.ValidName(s.Name) {
		return fmt.Errorf("step: name %q must be lower-case letters, digits and '_'", s.Name)
	}
	if s.Name == aftercare.StepCancellation {
		return fmt.Errorf("step: %q is reserved for the cancellation notice", s.Name)
	}
	if err := validateChannels(s.Channels); err != nil {
		return err
	}
	if err := validateTiming(s.When, s.Deadline); err != nil {
		return err
	}
	if err := validatePolicies(s); err != nil {
		return err
	}
	return validateFallback(s.Fallback, s.Channels)
}

// validateChannels checks that a step names at least one channel, each
// known and listed once.
func validateChannels(channels []aftercare.Channel) error {
	if len(channels) == 0 {
		return errors.New("channels: list at least one of sms, email")
	}
	for i, ch := range channels {
		if !ch.Valid() {
			return fmt.Errorf("channels: unknown channel %q; use sms or email", ch)
		}
		if slices.Contains(channels[:i], ch) {
			return fmt.Errorf("channels: %s is listed twice", ch)
		}
	}
	return nil
}

// validateTiming checks when a step falls due and its deadline.
func validateTiming(when, deadline aftercare.TimeRule) error {
	if err := validateRule(when, false); err != nil {
		return fmt.Errorf("when: %w", err)
	}
	if err := validateRule(deadline, true); err != nil {
		return fmt.Errorf("deadline: %w", err)
	}
	if deadline.Anchor == aftercare.AnchorSend && deadline.Days == 0 && deadline.At == "" && deadline.Offset <= 0 {
		return errors.New("deadline: a deadline anchored on send needs a positive offset")
	}
	return nil
}

// validatePolicies checks a step's quiet hours, if_late and priority, and
// fills in those left out.
func validatePolicies(s *aftercare.Step) error {
	return cmp.Or( // the first problem
		oneOf("quiet_hours", &s.Quiet, aftercare.QuietDefer, aftercare.QuietSkip, aftercare.QuietIgnore),
		oneOf("if_late", &s.IfLate, aftercare.LateSend, aftercare.LateSkip),
		oneOf("priority", &s.Priority, aftercare.PriorityRoutine, aftercare.PriorityClinical))
}

// oneOf checks that setting field is one of allowed, and sets it to the
// first, the default, when it is left out.
func oneOf[T ~string](field string, v *T, allowed ...T) error {
	switch {
	case *v == "":
		*v = allowed[0]
	case !slices.Contains(allowed, *v):
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = string(a)
		}
		return fmt.Errorf("%s: %q is not one of %s", field, *v, strings.Join(names, ", "))
	}
	return nil
}

// validateFallback checks a step's fallback channel, if it has one: a
// known channel that is not one of the step's own.
func validateFallback(fallback aftercare.Channel, channels []aftercare.Channel) error {
	switch {
	case fallback == "":
	case !fallback.Valid():
		return fmt.Errorf("fallback: unknown channel %q; use email", fallback)
	case slices.Contains(channels, fallback):
		return fmt.Errorf("fallback: %s is one of the step's channels already", fallback)
	}
	return nil
}

func validateRule(r aftercare.TimeRule, deadline bool) error {
	switch r.Anchor {
	case aftercare.AnchorBooked, aftercare.AnchorAppointment, aftercare.AnchorTreatmentEnd:
	case aftercare.AnchorSend:
		if !deadline {
			return errors.New("anchor: send can only anchor a deadline")
		}
	case "":
		return errors.New("anchor: required; one of booked, appointment, treatment_end (or send, for deadlines)")
	default:
		return fmt.Errorf("anchor: unknown anchor %q", r.Anchor)
	}
	if r.Days < 0 || r.Days > 366 {
		return fmt.Errorf("days: %d is out of range 0..366", r.Days)
	}
	if r.At != "" {
		if _, err := time.Parse("15:04", r.At); err != nil {
			return fmt.Errorf("at: %q is not a 24-hour clock time such as 10:00", r.At)
		}
	}
	return nil
}
