package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aftercare/aftercare"
)

// A plan is written one line a message, fields apart by tabs:
//
//	step	channel	send_at	deadline[	note]
//
// with times as Unix seconds, and nine digits of fraction when they have
// one. Beside a dozen JSON objects with RFC 3339 times it is a third of the
// size, and the plan is the largest field of a record: the record's memory
// goes with it. A plan whose step, channel or note holds a tab, a newline
// or bytes that are not UTF-8 (a Go caller's resend reason can), and the
// empty plan, are written as JSON, the form of earlier releases, which is
// still read.
func encodePlan(plan []planned) (string, error) {
	var b strings.Builder
	for i, p := range plan {
		if !planField(p.Step) || !planField(string(p.Channel)) || !planField(p.Note) || strings.HasPrefix(p.Step, "[") {
			data, err := json.Marshal(plan)
			return string(data), err
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Step)
		b.WriteByte('\t')
		b.WriteString(string(p.Channel))
		b.WriteByte('\t')
		b.WriteString(unixText(p.SendAt))
		b.WriteByte('\t')
		b.WriteString(unixText(p.Deadline))
		if p.Note != "" {
			b.WriteByte('\t')
			b.WriteString(p.Note)
		}
	}
	if b.Len() == 0 {
		return "[]", nil
	}
	return b.String(), nil
}

func planField(s string) bool { return !strings.ContainsAny(s, "\t\n") && utf8.ValidString(s) }

// unixText writes t as Unix seconds, with a fraction if it has one.
func unixText(t time.Time) string {
	s := strconv.FormatInt(t.Unix(), 10)
	if ns := t.Nanosecond(); ns != 0 {
		s += fmt.Sprintf(".%09d", ns)
	}
	return s
}

// parseUnix reads what unixText writes.
func parseUnix(s string) (time.Time, error) {
	sec, frac, hasFrac := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var ns int64
	if hasFrac {
		if len(frac) != 9 {
			return time.Time{}, fmt.Errorf("fraction %q is not nine digits", frac)
		}
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil || ns < 0 {
			return time.Time{}, fmt.Errorf("fraction %q is not nine digits", frac)
		}
	}
	t := time.Unix(n, ns)
	if y := t.UTC().Year(); y < 1 || y > 9999 { // no plan has them, and JSON cannot hold them
		return time.Time{}, fmt.Errorf("%s is outside the years 1 to 9999", s)
	}
	return t, nil
}

// decodePlan decodes a record's plan field: the lines encodePlan writes,
// or the JSON of earlier releases. The worker reads a record before every
// send, and encoding/json took most of that read's CPU, so JSON of the
// form earlier releases wrote is read directly too (readPlan); anything
// else, such as a note that needed escaping, goes through encoding/json.
func decodePlan(data string) ([]planned, error) {
	if !strings.HasPrefix(data, "[") {
		return readLines(data)
	}
	if plan, ok := readPlan(data); ok {
		return plan, nil
	}
	var plan []planned
	err := json.Unmarshal([]byte(data), &plan)
	return plan, err
}

// readLines reads the lines encodePlan writes.
func readLines(data string) ([]planned, error) {
	plan := make([]planned, 0, strings.Count(data, "\n")+1)
	if !utf8.ValidString(data) {
		return nil, errors.New("plan is not valid UTF-8")
	}
	for line := range strings.SplitSeq(data, "\n") {
		f := strings.SplitN(line, "\t", 5)
		if len(f) < 4 {
			return nil, fmt.Errorf("plan line %d has %d fields, want 4 or 5", len(plan)+1, len(f))
		}
		p := planned{Step: f[0], Channel: aftercare.Channel(f[1])}
		var err error
		if p.SendAt, err = parseUnix(f[2]); err != nil {
			return nil, fmt.Errorf("plan line %d: send_at: %w", len(plan)+1, err)
		}
		if p.Deadline, err = parseUnix(f[3]); err != nil {
			return nil, fmt.Errorf("plan line %d: deadline: %w", len(plan)+1, err)
		}
		if len(f) == 5 {
			if strings.Contains(f[4], "\t") { // encodePlan writes such a note as JSON
				return nil, fmt.Errorf("plan line %d has more than 5 fields", len(plan)+1)
			}
			p.Note = f[4]
		}
		plan = append(plan, p)
	}
	return plan, nil
}

// readPlan reads exactly what json.Marshal writes for a []planned whose
// strings need no escapes:
//
//	[{"step":"S","channel":"C","send_at":"T","deadline":"T","note":"N"},...]
//
// with the note left out when empty, and decodes it as encoding/json would.
// It reports false for anything else.
func readPlan(data string) ([]planned, bool) {
	rest, ok := strings.CutPrefix(data, "[")
	if !ok {
		return nil, false
	}
	plan := make([]planned, 0, strings.Count(rest, `{"step":`))
	for rest != "]" {
		if len(plan) > 0 {
			if rest, ok = strings.CutPrefix(rest, ","); !ok {
				return nil, false
			}
		}
		var p planned
		var step, channel, sendAt, deadline string
		if step, rest, ok = jsonString(rest, `{"step":`); !ok {
			return nil, false
		}
		if channel, rest, ok = jsonString(rest, `,"channel":`); !ok {
			return nil, false
		}
		if sendAt, rest, ok = jsonString(rest, `,"send_at":`); !ok {
			return nil, false
		}
		if deadline, rest, ok = jsonString(rest, `,"deadline":`); !ok {
			return nil, false
		}
		if strings.HasPrefix(rest, `,"note":`) {
			if p.Note, rest, ok = jsonString(rest, `,"note":`); !ok {
				return nil, false
			}
		}
		if rest, ok = strings.CutPrefix(rest, "}"); !ok {
			return nil, false
		}
		// As time.Time's UnmarshalJSON does, without the quotes.
		if p.SendAt.UnmarshalText([]byte(sendAt)) != nil || p.Deadline.UnmarshalText([]byte(deadline)) != nil {
			return nil, false
		}
		p.Step, p.Channel = step, aftercare.Channel(channel)
		plan = append(plan, p)
	}
	return plan, true
}

// jsonString cuts prefix and then a JSON string of valid UTF-8 without
// escapes or control characters off the front of s.
func jsonString(s, prefix string) (value, rest string, ok bool) {
	if s, ok = strings.CutPrefix(s, prefix+`"`); !ok {
		return "", "", false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i], s[i+1:], utf8.ValidString(s[:i])
		case c == '\\' || c < ' ':
			return "", "", false
		}
	}
	return "", "", false
}
