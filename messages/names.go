package messages

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// A patient's name is the one part of an SMS the templates cannot budget
// for: a single "á" or "ł" in it would turn a GSM-7 text into UCS-2, more
// than doubling its parts. So an SMS whose template text is GSM-7 carries
// the name in GSM-7: each word of it spelled with GSM-7 letters where there
// is an obvious spelling (María → Maria, Łukasz → Lukasz, Nguyễn → Nguyen),
// and left out where there is none (李, Σοφία): a name is better missing
// than mangled. Templates write the greeting so that it reads without one:
// "Hi{{with .FirstName}} {{.}}{{end}},".

// gsmName spells name in GSM-7, word by word, leaving out each word that
// cannot be spelled so; "" if none can.
func gsmName(name string) string {
	var words []string
	for _, w := range strings.Fields(name) {
		if g, ok := gsmWord(w); ok {
			words = append(words, g)
		}
	}
	return strings.Join(words, " ")
}

// gsmWord spells one word of a name in GSM-7: letters GSM-7 has stay; the
// others lose their accents (decomposed, marks dropped) or take the usual
// Latin spelling; false if a letter has neither.
func gsmWord(w string) (string, bool) {
	var b strings.Builder
	for _, r := range w {
		if isGSM(r) {
			b.WriteRune(r)
			continue
		}
		if s, ok := latinSpelling[r]; ok {
			b.WriteString(s)
			continue
		}
		base := stripMarks(r)
		if base == "" || !allGSM(base) {
			return "", false
		}
		b.WriteString(base)
	}
	return b.String(), b.Len() > 0
}

// stripMarks is r decomposed without its combining marks: "ễ" is "e".
func stripMarks(r rune) string {
	var b strings.Builder
	for _, d := range norm.NFD.String(string(r)) {
		if !unicode.Is(unicode.Mn, d) {
			b.WriteRune(d)
		}
	}
	if b.String() == string(r) { // nothing to strip: not a marked letter
		return ""
	}
	return b.String()
}

func isGSM(r rune) bool {
	return strings.ContainsRune(gsmBasic, r) && r != '\n' && r != '\r'
}

func allGSM(s string) bool {
	for _, r := range s {
		if !isGSM(r) {
			return false
		}
	}
	return true
}

// latinSpelling spells the letters of names that do not decompose into a
// GSM-7 letter and a mark, and the punctuation names carry.
var latinSpelling = map[rune]string{
	'Ł': "L", 'ł': "l", 'Đ': "D", 'đ': "d", 'Ð': "D", 'ð': "d",
	'Þ': "Th", 'þ': "th", 'Œ': "OE", 'œ': "oe", 'ı': "i", 'ĸ': "k",
	'Ŋ': "N", 'ŋ': "n", 'ſ': "s", 'Ħ': "H", 'ħ': "h", 'Ŧ': "T", 'ŧ': "t",
	'’': "'", 'ʼ': "'", '‘': "'", '‐': "-", '‑': "-", '–': "-",
}
