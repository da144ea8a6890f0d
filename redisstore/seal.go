package redisstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// sealer encrypts the fields that hold patient data (the booking, with the
// contact details, and the patient's replies) with AES-256-GCM. The first
// key encrypts; every key decrypts, so keys can be rotated: add the new key
// first, and drop the old one once the records it wrote have expired. Each
// sealed value names its key by id: "k1:<key id>:<base64 nonce+ciphertext>".
type sealer struct {
	ids  []string
	aead map[string]cipher.AEAD
}

const sealPrefix = "k1:"

// newSealer takes 32-byte keys; none means values are stored in plain text.
func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{aead: map[string]cipher.AEAD{}}
	for i, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("data key %d is %d bytes; AES-256 needs 32", i+1, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		id := hex.EncodeToString(sum[:4])
		s.ids = append(s.ids, id)
		s.aead[id] = gcm
	}
	return s, nil
}

// on reports whether the sealer encrypts.
func (s *sealer) on() bool { return len(s.ids) > 0 }

// seal encrypts plain under the first key, binding it to the record's key
// and field so a sealed value cannot be moved to another record.
func (s *sealer) seal(plain []byte, context string) string {
	if len(s.ids) == 0 {
		return string(plain)
	}
	id := s.ids[0]
	gcm := s.aead[id]
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand does not fail
	out := gcm.Seal(nonce, nonce, plain, []byte(context))
	return sealPrefix + id + ":" + base64.RawStdEncoding.EncodeToString(out)
}

// open decrypts a sealed value, or returns a plain one as it is (records
// written before a key was set).
func (s *sealer) open(value, context string) ([]byte, error) {
	rest, sealed := strings.CutPrefix(value, sealPrefix)
	if !sealed {
		return []byte(value), nil
	}
	id, data, ok := strings.Cut(rest, ":")
	gcm := s.aead[id]
	if !ok || gcm == nil {
		return nil, fmt.Errorf("sealed with key %s, which is not among the store's data keys", id)
	}
	raw, err := base64.RawStdEncoding.DecodeString(data)
	if err != nil || len(raw) < gcm.NonceSize() {
		return nil, errors.New("sealed value is damaged")
	}
	plain, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], []byte(context))
	if err != nil {
		return nil, errors.New("sealed value does not decrypt: damaged, or sealed for another record")
	}
	return plain, nil
}
