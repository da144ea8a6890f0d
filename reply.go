package aftercare

import (
	"strings"
	"unicode"
)

// Keyword is what a patient's text message asks for.
type Keyword string

// Keywords.
const (
	KeywordStop  Keyword = "stop"  // opt out of SMS
	KeywordStart Keyword = "start" // opt back in
	KeywordHelp  Keyword = "help"  // who is this and how to opt out
	KeywordYes   Keyword = "yes"   // I have read the consent details
	KeywordOther Keyword = ""      // anything else: kept for the clinic
)

var keywords = map[string]Keyword{
	"STOP": KeywordStop, "STOPALL": KeywordStop, "UNSUBSCRIBE": KeywordStop, "CANCEL": KeywordStop,
	"END": KeywordStop, "QUIT": KeywordStop, "REVOKE": KeywordStop, "OPTOUT": KeywordStop, "BAJA": KeywordStop,
	"START": KeywordStart, "UNSTOP": KeywordStart,
	"HELP": KeywordHelp, "INFO": KeywordHelp, "AYUDA": KeywordHelp,
	"YES": KeywordYes, "SI": KeywordYes,
}

// ParseReply reads a patient's text the way carriers read opt-out words:
// case and accents do not matter, punctuation and emoji around the words are
// ignored, and the first word decides ("Stop please!" is STOP, "OPT OUT" and
// "opt-out" too). Anything else is KeywordOther.
func ParseReply(body string) Keyword {
	words := strings.FieldsFunc(strings.ToUpper(body), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	if len(words) == 0 {
		return KeywordOther
	}
	first := fold(words[0])
	if first == "OPT" && len(words) > 1 && fold(words[1]) == "OUT" {
		return KeywordStop
	}
	return keywords[first]
}

// fold drops the accents Spanish speakers may type ("SÍ").
func fold(w string) string {
	return strings.NewReplacer("Á", "A", "É", "E", "Í", "I", "Ó", "O", "Ú", "U", "Ü", "U").Replace(w)
}
