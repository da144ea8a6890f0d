package consent

import (
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
)

var (
	oldKey = []byte("0123456789abcdef0123456789abcdef")
	newKey = []byte("fedcba9876543210fedcba9876543210")
)

func record(id, fp string) *aftercare.Record {
	rec := &aftercare.Record{Fingerprint: fp}
	rec.ID = id
	return rec
}

// TestToken: a token stands for one booking as it is (its fingerprint),
// under the data keys; any change to it, to the booking or to the key
// makes it worthless.
func TestToken(t *testing.T) {
	t.Parallel()
	l, err := NewLinks("https://care.example.com/", [][]byte{oldKey})
	if err != nil {
		t.Fatal(err)
	}
	rec := record("bk_1001", "fp1")
	token := l.Token(rec)
	if url := l.ConsentURL(rec); url != "https://care.example.com/consent/"+token {
		t.Errorf("ConsentURL = %q", url)
	}
	if id, ok := BookingOf(token); !ok || id != "bk_1001" || !l.Valid(token, rec) {
		t.Fatalf("BookingOf(%q) = %q, %v; Valid = %v", token, id, ok, l.Valid(token, rec))
	}
	if l.Token(rec) != token {
		t.Error("the token of the same booking differs: a resent text would not match what went")
	}

	id, sum, _ := strings.Cut(token, ".")
	flipped := []byte(sum)
	flipped[3] ^= 1
	// The last character carries 2 bits of the HMAC and 4 unused ones:
	// another character with the same 2 bits decodes to the same bytes
	// unless decoding is strict.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sum[len(sum)-1])
	sameBits := sum[:len(sum)-1] + string(alphabet[last^1])
	for name, bad := range map[string]string{
		"altered":        id + "." + string(flipped),
		"respelt":        id + "." + sameBits,
		"other booking":  "bk_1002." + sum,
		"cut":            token[:len(token)-1],
		"empty":          "",
		"no signature":   id,
		"not base64":     id + "." + strings.Repeat("*", len(sum)),
		"an id too long": strings.Repeat("a", 65) + "." + sum,
	} {
		if _, ok := BookingOf(bad); ok && l.Valid(bad, rec) {
			t.Errorf("%s token %q is valid", name, bad)
		}
	}
	if l.Valid(token, record("bk_1001", "fp2")) {
		t.Error("a token is valid for a new version of the booking")
	}
	if l.Valid(l.Token(record("bk_1002", "fp1")), rec) {
		t.Error("another booking's token is valid")
	}

	other, _ := NewLinks("https://care.example.com", [][]byte{newKey})
	if other.Valid(token, rec) {
		t.Error("a token made under another key is valid")
	}
	rotated, _ := NewLinks("https://care.example.com", [][]byte{newKey, oldKey})
	if !rotated.Valid(token, rec) || rotated.Token(rec) == token {
		t.Error("after rotation, links made under the old key must still work, and new ones use the new key")
	}
}

// TestFormToken: a form is good for formAge after the page served it, for
// its own link only.
func TestFormToken(t *testing.T) {
	t.Parallel()
	l, _ := NewLinks("https://care.example.com", [][]byte{oldKey})
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	form := l.formToken("bk_1.abc", now)
	for _, c := range []struct {
		name        string
		token, form string
		at          time.Time
		want        bool
	}{
		{"fresh", "bk_1.abc", form, now.Add(time.Minute), true},
		{"old", "bk_1.abc", form, now.Add(formAge + time.Second), false},
		{"another link's", "bk_2.abc", form, now, false},
		{"altered", "bk_1.abc", strings.Replace(form, ".", ".A", 1), now, false},
		{"missing", "bk_1.abc", "", now, false},
		{"from the future", "bk_1.abc", l.formToken("bk_1.abc", now.Add(time.Hour)), now, false},
	} {
		if got := l.validForm(c.token, c.form, c.at, formAge); got != c.want {
			t.Errorf("%s form: valid = %v, want %v", c.name, got, c.want)
		}
	}
}
