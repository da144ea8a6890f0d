package consent

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/aftercare/aftercare"
)

// Links makes and checks the links to consent pages. A link is
// BASE/consent/TOKEN, and a token is the booking id, a dot, and 22
// characters of HMAC-SHA256 over the id and the booking's fingerprint under
// a key derived from the data key. The fingerprint changes with every new
// version of the booking's details, so a reschedule (perhaps to a
// corrected phone number) makes a new link and retires the old one; a
// report of treatment or a resend does not. Nothing but the data key can
// make a token, and a token names no one.
type Links struct {
	base string
	// The first of each signs; every one checks (data key rotation).
	keys, formKeys [][]byte
}

// Infos bind a derived key to its one use.
const (
	linkInfo = "aftercare consent link v1"
	formInfo = "aftercare consent form v1"
)

// macSize is the bytes of HMAC a token keeps: 128 bits cannot be guessed.
const macSize = 16

// encoding writes the HMAC in a token. Strict: the unused bits of the last
// character must be zero, so that a token has one spelling only.
var encoding = base64.RawURLEncoding.Strict()

// NewLinks returns links under base (AFTERCARE_PUBLIC_URL) signed with keys
// derived from dataKeys. Without data keys (development only) the key is
// fixed and public: anyone can make a valid link.
func NewLinks(base string, dataKeys [][]byte) (*Links, error) {
	l := &Links{base: strings.TrimSuffix(base, "/")}
	if len(dataKeys) == 0 {
		dataKeys = [][]byte{nil}
	}
	for _, k := range dataKeys {
		lk, err := hkdf.Key(sha256.New, k, nil, linkInfo, 32)
		if err != nil {
			return nil, err
		}
		fk, err := hkdf.Key(sha256.New, k, nil, formInfo, 32)
		if err != nil {
			return nil, err
		}
		l.keys, l.formKeys = append(l.keys, lk), append(l.formKeys, fk)
	}
	return l, nil
}

// Path is where consent pages are served.
const Path = "/consent/"

// ConsentURL is the link to rec's consent page.
func (l *Links) ConsentURL(rec *aftercare.Record) string {
	return l.base + Path + l.Token(rec)
}

// ConsentURLs are the links to rec's consent page under each data key, the
// one ConsentURL makes first.
func (l *Links) ConsentURLs(rec *aftercare.Record) []string {
	urls := make([]string, len(l.keys))
	for i, k := range l.keys {
		urls[i] = l.base + Path + token(k, rec)
	}
	return urls
}

// Token is the token of rec's consent page as it is now.
func (l *Links) Token(rec *aftercare.Record) string { return token(l.keys[0], rec) }

// token is the token of rec's consent page under key.
func token(key []byte, rec *aftercare.Record) string {
	return rec.ID + "." + encoding.EncodeToString(mac(key, rec.ID, rec.Fingerprint))
}

// BookingOf returns the booking id a token names, if it is shaped like a
// token; only Valid says whether it is one.
func BookingOf(token string) (string, bool) {
	id, sum, ok := strings.Cut(token, ".")
	if !ok || !aftercare.ValidID(id) || len(sum) != encoding.EncodedLen(macSize) {
		return "", false
	}
	return id, true
}

// Valid reports whether token is the token of rec as it is now, under any
// of the keys.
func (l *Links) Valid(token string, rec *aftercare.Record) bool {
	return l.validFor(token, rec.ID, rec.Fingerprint)
}

// ValidSigned reports whether token is the token rec had when its consent
// was signed on the page, before a change retired it: it opens the
// receipt, and nothing else.
func (l *Links) ValidSigned(token string, rec *aftercare.Record) bool {
	ack, ev := rec.ConsentAcknowledgement, rec.Evidence
	return ack != nil && ack.Method == aftercare.AckByPage && ev != nil && ev.Fingerprint != "" &&
		l.validFor(token, rec.ID, ev.Fingerprint)
}

// validFor reports whether token is booking id's token for fingerprint,
// under any of the keys.
func (l *Links) validFor(token, id, fingerprint string) bool {
	tid, sum, _ := strings.Cut(token, ".")
	got, err := encoding.DecodeString(sum)
	if err != nil || tid != id {
		return false
	}
	for _, k := range l.keys {
		if hmac.Equal(got, mac(k, id, fingerprint)) {
			return true
		}
	}
	return false
}

func mac(key []byte, id, fingerprint string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(fingerprint))
	return m.Sum(nil)[:macSize]
}

// formToken is the anti-forgery value of the consent form of token, issued
// at at: the time, a dot, and an HMAC of both under the link key. Only this
// service can make one, and only a page it served carries it.
func (l *Links) formToken(token string, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return ts + "." + encoding.EncodeToString(formMAC(l.formKeys[0], token, ts))
}

// validForm reports whether value is a form token of token issued at most
// maxAge before now.
func (l *Links) validForm(token, value string, now time.Time, maxAge time.Duration) bool {
	ts, sum, ok := strings.Cut(value, ".")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return false
	}
	if age := now.Sub(time.Unix(unix, 0)); age < -time.Minute || age > maxAge {
		return false
	}
	got, err := encoding.DecodeString(sum)
	if err != nil {
		return false
	}
	for _, k := range l.formKeys {
		if hmac.Equal(got, formMAC(k, token, ts)) {
			return true
		}
	}
	return false
}

func formMAC(key []byte, token, ts string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(token + "\x00" + ts))
	return m.Sum(nil)[:macSize]
}
