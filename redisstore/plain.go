package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A store with data keys and one without must not share a Redis: the second
// would write contact details in plain text beside encrypted records. Nor
// may a store whose keys are all others than those the records are sealed
// with: the service could not read what it writes. sealedKey is the set of
// the ids of the keys records here are sealed with; a store with keys adds
// the one it encrypts with, and refuses to create a record if the set has
// ids but none of its own (a rotation keeps the old key among the new
// ones, so both sides of a rolling restart share one). A store without keys
// refuses while the set exists. Each looks at most once a minute, so
// neither costs a round trip per booking. A record that slipped through all
// the same (written before the keyed service first wrote) is flagged and
// encrypted in place when a keyed store reads it.
const sealedKey = "aftercare:sealed"

// guardEvery is how often a store says or checks that the Redis holds
// encrypted records.
const guardEvery = time.Minute

// errPlainBesideSealed is what a store without keys answers on a Redis with
// encrypted records, and errOtherKeys what a store whose keys are not
// those of the records here answers.
var (
	errPlainBesideSealed = errors.New("this Redis holds booking records encrypted with data keys, and this store has none: " +
		"it would write the patient's contact details in plain text. Give it the service's data keys " +
		"(redisstore.NewSealed; or build it with package service, from the service's own configuration)")
	errOtherKeys = errors.New("this Redis holds booking records sealed with data keys this store does not have: " +
		"the service could not read what it would write. Give it the service's data keys; if the records under the old keys " +
		"are gone for good, DEL " + sealedKey)
)

// OnPlaintext sets what hears of a booking record found in plain text by a
// store with data keys (it is encrypted at once; the record's id is told,
// to be logged).
func (s *Store) OnPlaintext(found func(id string)) { s.plainFound = found }

// guard, at most once every guardEvery, says (with keys) or checks
// (without) that this Redis holds encrypted records.
func (s *Store) guard(ctx context.Context) error {
	now := time.Now().UnixNano()
	if now < s.guardNext.Load() {
		return nil
	}
	if s.seal.on() {
		known, err := s.rdb.SMembers(ctx, sealedKey).Result()
		if err != nil {
			return err
		}
		if len(known) > 0 && !slices.ContainsFunc(s.seal.ids, func(id string) bool { return slices.Contains(known, id) }) {
			return errOtherKeys
		}
		if err := s.rdb.SAdd(ctx, sealedKey, s.seal.ids[0]).Err(); err != nil {
			return err
		}
	} else {
		n, err := s.rdb.Exists(ctx, sealedKey).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return errPlainBesideSealed
		}
	}
	s.guardNext.Store(now + int64(guardEvery))
	return nil
}

// sealScript: KEYS the hashes the field may be in (the record, its body);
// ARGV the field, its plain value, its sealed value. It replaces the value
// only if it is still the plain one.
var sealScript = redis.NewScript(`
for _, key in ipairs(KEYS) do
  if redis.call('HGET', key, ARGV[1]) == ARGV[2] then
    redis.call('HSET', key, ARGV[1], ARGV[3])
    return 1
  end
end
return 0
`)

// sealFound encrypts in place the booking of record id, read from h, if a
// store with keys finds it in plain text, and tells OnPlaintext's function.
// A failure is left for the record's next read or change.
func (s *Store) sealFound(ctx context.Context, id string, h map[string]string) {
	plain := h["booking"]
	if !s.seal.on() || plain == "" || strings.HasPrefix(plain, sealPrefix) {
		return
	}
	key := Key(id)
	sealed, err := sealScript.Run(ctx, s.rdb, []string{key, BodyKey(id)}, "booking", plain, s.seal.seal([]byte(plain), key+"/booking")).Int()
	if err == nil && sealed == 1 && s.plainFound != nil { // told once, by the reader that sealed it
		s.plainFound(id)
	}
}
