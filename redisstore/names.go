package redisstore

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// namer names a phone number in Redis without writing it down: the opt-out
// list and the number index are keyed by these names.
//
// With data keys a name is "<key id>:" and 32 hex digits of HMAC-SHA256 of
// the number, under a key derived from the data key; phone numbers are a
// small space, so only a keyed digest keeps the number from being
// recomputed by whoever reads Redis. The first data key names; every key's
// name is looked up, so a number that opted out under an older key still
// has, after rotation (see Store.Rekey). Without data keys (development) a
// name is 32 hex digits of plain SHA-256: the legacy form, which records
// written before keyed names still hold and which is still looked up.
type namer struct {
	ids  []string // key ids, as the sealer names them
	macs [][]byte // digest key of each data key
}

// digestInfo binds a derived key to its one use.
const digestInfo = "aftercare phone digest v1"

func newNamer(keys [][]byte, ids []string) (*namer, error) {
	n := &namer{ids: ids}
	for _, k := range keys {
		mk, err := hkdf.Key(sha256.New, k, nil, digestInfo, 32)
		if err != nil {
			return nil, err
		}
		n.macs = append(n.macs, mk)
	}
	return n, nil
}

// name is the name phone is written under.
func (n *namer) name(phone string) string {
	if len(n.macs) == 0 {
		return legacyName(phone)
	}
	return n.keyed(0, phone)
}

// names are every name phone may be stored under, the one it is written
// under first.
func (n *namer) names(phone string) []string {
	out := make([]string, 0, len(n.macs)+1)
	for i := range n.macs {
		out = append(out, n.keyed(i, phone))
	}
	return append(out, legacyName(phone))
}

// current reports whether name is the form the store writes now.
func (n *namer) current(name string) bool {
	if len(n.ids) == 0 {
		return !strings.Contains(name, ":")
	}
	return strings.HasPrefix(name, n.ids[0]+":")
}

func (n *namer) keyed(i int, phone string) string {
	m := hmac.New(sha256.New, n.macs[i])
	m.Write([]byte(phone))
	return n.ids[i] + ":" + hex.EncodeToString(m.Sum(nil)[:16])
}

// legacyName is plain SHA-256, the name written before keyed names.
func legacyName(phone string) string {
	sum := sha256.Sum256([]byte(phone))
	return hex.EncodeToString(sum[:16])
}
