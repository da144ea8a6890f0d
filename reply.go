package aftercare

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Keyword is what a patient's text asks aftercare to do.
type Keyword string

// Keywords.
const (
	KeywordStop  Keyword = "stop"  // opt out of SMS
	KeywordStart Keyword = "start" // opt back in
	KeywordHelp  Keyword = "help"  // who is this and how to opt out
	KeywordYes   Keyword = "yes"   // I have read the consent details
	KeywordNone  Keyword = ""      // nothing to do by itself
)

// Reading is how a patient's text is understood.
type Reading struct {
	// Keyword is what the text asks aftercare to do, if anything.
	Keyword Keyword
	// Exact: the whole text is the keyword (carriers act on such texts
	// themselves, and answer STOP with their own confirmation).
	Exact bool
	// ForClinic: the text says more than a keyword; a person at the clinic
	// reads it.
	ForClinic bool
	// Urgent: the text mentions a red-flag symptom; Flags are the phrases
	// found, for the person who reads it.
	Urgent bool
	Flags  []string
	// Locale is the language the words read as, where they tell ("es"), or
	// "".
	Locale string
}

// keywords are the texts that are a keyword as a whole, once folded (see
// words): carriers' opt-out and opt-in words, HELP, and the consent answer.
var keywords = map[string]Keyword{
	"stop": KeywordStop, "stopall": KeywordStop, "stop all": KeywordStop, "unsubscribe": KeywordStop,
	"cancel": KeywordStop, "end": KeywordStop, "quit": KeywordStop, "revoke": KeywordStop,
	"optout": KeywordStop, "opt out": KeywordStop, "baja": KeywordStop, "alto": KeywordStop, "parar": KeywordStop,
	"start": KeywordStart, "unstop": KeywordStart, "yes start": KeywordStart, "alta": KeywordStart,
	"help": KeywordHelp, "info": KeywordHelp, "ayuda": KeywordHelp,
	"yes": KeywordYes, "si": KeywordYes, "yes i have read it": KeywordYes, "si lo he leido": KeywordYes,
}

// courtesy are words that change nothing around a keyword ("Stop. Thank
// you", "yes please").
var courtesy = map[string]bool{
	"please": true, "pls": true, "plz": true, "thanks": true, "thank": true, "you": true, "thx": true,
	"ok": true, "okay": true, "por": true, "favor": true, "gracias": true, "muchas": true,
}

// optOut are phrases whose clear intent is to stop the texts, in the
// phrase syntax of RedFlags (a trailing * matches any ending).
var optOut = compile(map[string][]string{
	"en": {"stop text*", "stop messag*", "stop send*", "stop contact*", "no more text*", "no more messag*",
		"unsubscribe me", "remove me from", "take me off", "dont text me", "do not text me", "dont message me",
		"do not message me", "dont contact me", "do not contact me", "opt me out", "stop these", "stop the messages"},
	"es": {"no mas mensajes", "no me envien", "no me manden", "dejen de enviar*", "dejen de mandar*",
		"dejen de escribir*", "darme de baja", "dar de baja", "quiero la baja", "no quiero recibir"},
})

// spanish are common words that tell a Spanish text from an English one.
var spanish = map[string]bool{
	"hola": true, "gracias": true, "tengo": true, "mi": true, "el": true, "la": true, "los": true, "las": true,
	"que": true, "por": true, "favor": true, "puedo": true, "ojo": true, "ojos": true, "parpado": true, "ceja": true,
	"dolor": true, "cita": true, "bien": true, "esta": true, "estoy": true, "muy": true, "si": true, "ayuda": true,
	"baja": true, "para": true, "con": true, "una": true, "del": true, "pero": true, "cuando": true, "tambien": true,
	"mas": true, "mensajes": true, "hinchado": true, "hinchada": true, "tragar": true, "respirar": true,
}

// ReadReply reads a patient's text: a keyword message is one whose whole
// text, ignoring case, accents, punctuation and emoji (and courtesies such
// as "thank you"), is a keyword; a text that clearly asks to stop the texts
// ("please stop texting me", "no más mensajes") is an opt-out too; a text
// that starts with YES acknowledges the consent whatever follows. A text
// that mentions a red flag in flags is urgent whatever else it is, and is
// never taken as an opt-out: a person at the clinic reads it first. Any
// text that says more than a keyword is for the clinic.
func ReadReply(text string, flags *RedFlags) Reading {
	ws := words(text)
	r := Reading{Locale: locale(ws)}
	if flags != nil {
		r.Flags = flags.find(ws)
		r.Urgent = len(r.Flags) > 0
	}
	core := trimCourtesy(ws)
	switch kw, exact := keywords[strings.Join(ws, " ")]; {
	case exact && !r.Urgent:
		r.Keyword, r.Exact = kw, true
		return r
	case len(core) > 0 && keywords[strings.Join(core, " ")] == KeywordStop && !r.Urgent:
		r.Keyword = KeywordStop // "Stop. Thank you"
		return r
	case len(ws) > 0 && keywords[ws[0]] == KeywordYes:
		r.Keyword = KeywordYes // "Yes but my eyelid droops": acknowledged, and read
	case !r.Urgent && len(optOut.find(ws)) > 0:
		r.Keyword = KeywordStop
		return r
	}
	r.ForClinic = len(ws) > 0 || strings.TrimSpace(text) != ""
	if len(ws) == 1 && r.Keyword == KeywordYes {
		r.ForClinic = false
	}
	return r
}

func trimCourtesy(ws []string) []string {
	for len(ws) > 0 && courtesy[ws[0]] {
		ws = ws[1:]
	}
	for len(ws) > 0 && courtesy[ws[len(ws)-1]] {
		ws = ws[:len(ws)-1]
	}
	return ws
}

// locale guesses the language of words: Spanish if more of them are common
// Spanish words than not, else "".
func locale(ws []string) string {
	n := 0
	for _, w := range ws {
		if spanish[w] {
			n++
		}
	}
	if n > 0 && 3*n >= len(ws) {
		return "es"
	}
	return ""
}

// words folds text for matching: lower case, accents and apostrophes gone
// ("Can't" is "cant", "párpado" is "parpado"), split on everything that is
// not a letter or digit; emoji and punctuation are dropped.
func words(text string) []string {
	var b strings.Builder
	for _, r := range norm.NFD.String(strings.ToLower(text)) {
		switch {
		case unicode.Is(unicode.Mn, r), r == '\'', r == '’', r == 'ʼ':
			// accents and apostrophes
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		default:
			b.WriteByte(' ')
		}
	}
	return strings.Fields(b.String())
}

// RedFlags are the phrases that make a patient's text urgent: symptoms
// that may be a complication, in every language. A phrase is words; a word
// ending in "*" matches any word it begins ("droop*": droops, drooping,
// droopy); the words match in order, with up to two other words between
// them ("hard to swallow" matches "hard for me to swallow"). Case, accents
// and punctuation do not matter.
type RedFlags struct {
	phrases [][]string
	source  []string
}

// NewRedFlags compiles phrase lists (by locale) into RedFlags.
func NewRedFlags(lists ...map[string][]string) *RedFlags {
	all := map[string][]string{}
	for _, l := range lists {
		for loc, ps := range l {
			all[loc] = append(all[loc], ps...)
		}
	}
	return compile(all)
}

func compile(lists map[string][]string) *RedFlags {
	rf := &RedFlags{}
	seen := map[string]bool{}
	for _, ps := range lists {
		for _, p := range ps {
			ws := words(strings.ReplaceAll(p, "*", "zzstarzz"))
			for i, w := range ws {
				ws[i] = strings.ReplaceAll(w, "zzstarzz", "*")
			}
			key := strings.Join(ws, " ")
			if len(ws) == 0 || seen[key] {
				continue
			}
			seen[key] = true
			rf.phrases = append(rf.phrases, ws)
			rf.source = append(rf.source, p)
		}
	}
	return rf
}

// Len is the number of phrases.
func (rf *RedFlags) Len() int { return len(rf.phrases) }

// find returns the phrases found in ws, as they were written.
func (rf *RedFlags) find(ws []string) []string {
	var found []string
	for i, p := range rf.phrases {
		if matches(ws, p) {
			found = append(found, rf.source[i])
		}
	}
	return found
}

// maxGap is how many other words may stand between two words of a phrase.
const maxGap = 2

func matches(ws, phrase []string) bool {
	for start := range ws {
		if !wordMatches(ws[start], phrase[0]) {
			continue
		}
		at, ok := start, true
		for _, pw := range phrase[1:] {
			next := -1
			for j := at + 1; j < len(ws) && j <= at+1+maxGap; j++ {
				if wordMatches(ws[j], pw) {
					next = j
					break
				}
			}
			if next < 0 {
				ok = false
				break
			}
			at = next
		}
		if ok {
			return true
		}
	}
	return false
}

func wordMatches(w, pattern string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(w, prefix)
	}
	return w == pattern
}
