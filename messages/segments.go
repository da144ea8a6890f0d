package messages

import (
	"strings"
	"unicode/utf16"
)

// Encoding is how an SMS travels: GSM-7 (7 bits a character, 160 in one
// part) or UCS-2 (16 bits, 70 in one part), chosen by the carrier from the
// characters used. One character outside GSM-7 (a curly quote, an en dash,
// "á") turns the whole message into UCS-2.
type Encoding string

// Encodings.
const (
	GSM7 Encoding = "GSM-7"
	UCS2 Encoding = "UCS-2"
)

// gsmBasic is the GSM 03.38 default alphabet; gsmExtended are the characters
// reached through its escape, which cost two septets.
const (
	gsmBasic    = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsmExtended = "^{}\\[~]|€\f"
)

// Segment sizes: a message that fits one part may use all of it; a longer
// one is split into parts that each lose room to the concatenation header.
const (
	gsmSingle, gsmPart   = 160, 153
	ucs2Single, ucs2Part = 70, 67
)

// Segments returns how many parts (each billed as one SMS) text is sent in,
// and the encoding that decides it.
func Segments(text string) (int, Encoding) {
	if costs, ok := gsmCosts(text); ok {
		return pack(costs, gsmSingle, gsmPart), GSM7
	}
	var costs []int
	for _, r := range text {
		costs = append(costs, len(utf16.Encode([]rune{r}))) // a surrogate pair stays in one part
	}
	return pack(costs, ucs2Single, ucs2Part), UCS2
}

// gsmCosts gives each character's size in septets, or false if one is not
// in GSM-7.
func gsmCosts(text string) ([]int, bool) {
	costs := make([]int, 0, len(text))
	for _, r := range text {
		switch {
		case strings.ContainsRune(gsmBasic, r):
			costs = append(costs, 1)
		case strings.ContainsRune(gsmExtended, r):
			costs = append(costs, 2) // escape and character, never split
		default:
			return nil, false
		}
	}
	return costs, true
}

// pack counts the parts needed for characters of the given costs.
func pack(costs []int, single, part int) int {
	total := 0
	for _, c := range costs {
		total += c
	}
	if total <= single {
		return 1
	}
	parts, used := 1, 0
	for _, c := range costs {
		if used+c > part {
			parts, used = parts+1, 0
		}
		used += c
	}
	return parts
}
