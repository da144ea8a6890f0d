package redisstore

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/aftercare/aftercare"
)

// decodePlan decodes a record's plan field. The worker reads a record
// before every send, and encoding/json took most of that read's CPU, so the
// form encode writes is read directly (readPlan); anything else, such as a
// note that needed escaping, goes through encoding/json.
func decodePlan(data string) ([]planned, error) {
	if plan, ok := readPlan(data); ok {
		return plan, nil
	}
	var plan []planned
	err := json.Unmarshal([]byte(data), &plan)
	return plan, err
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
