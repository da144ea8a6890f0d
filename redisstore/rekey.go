package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// RekeyReport counts what Rekey did.
type RekeyReport struct {
	Bookings int // booking records read
	Items    int // inbox items read
	Resealed int // records and items written again under the first data key
	OptOuts  int // opt-out entries renamed and sealed under the first key
	Indexes  int // number indexes renamed under the first key
	// Unnamed counts opt-out entries left under a legacy SHA-256 name: no
	// booking holds their number, so it cannot be renamed. They are still
	// honoured; the entry moves when the number texts STOP again.
	Unnamed int
	// Unreadable counts opt-out entries under a data key the store was not
	// given: they are not honoured until that key is given again.
	Unreadable int
}

// Rekey brings what Redis holds under the store's first data key: each
// booking record is sealed again under it, and each number's opt-out entry
// and booking index is renamed to its keyed name, whether it was written
// under an older data key or as plain SHA-256 (before keyed names). After
// Rekey the older keys can be dropped without a number that replied STOP
// being texted again. It can run while the service runs and can be run
// again; progress, if not nil, is called after each booking with how many
// are done of how many.
func (s *Store) Rekey(ctx context.Context, progress func(done, total int)) (RekeyReport, error) {
	var rep RekeyReport
	if s.seal.on() { // what rekey seals under is a key of this Redis from now on (plain.go)
		if err := s.rdb.SAdd(ctx, sealedKey, s.seal.ids[0]).Err(); err != nil {
			return rep, fmt.Errorf("note the data key: %w", err)
		}
	}
	ids, err := s.bookingIDs(ctx)
	if err != nil {
		return rep, err
	}
	items, err := s.rdb.ZRange(ctx, inboxAll, 0, -1).Result()
	if err != nil {
		return rep, fmt.Errorf("list inbox items: %w", err)
	}
	total := len(ids) + len(items)
	for _, id := range ids {
		if err := s.rekeyBooking(ctx, id, &rep); err != nil {
			return rep, err
		}
		rep.Bookings++
		if progress != nil {
			progress(rep.Bookings, total)
		}
	}
	for _, id := range items {
		if err := s.rekeyItem(ctx, id, &rep); err != nil {
			return rep, err
		}
		rep.Items++
		if progress != nil {
			progress(rep.Bookings+rep.Items, total)
		}
	}
	return rep, s.rekeyOptOuts(ctx, &rep)
}

// bookingIDs lists the ids of the bookings in Redis, on every master of a
// cluster.
func (s *Store) bookingIDs(ctx context.Context) ([]string, error) {
	prefix := strings.TrimSuffix(Key(""), "}")
	var (
		mu  sync.Mutex
		ids []string
	)
	each := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, Key("*"), 1000).Iterator()
		for it.Next(ctx) {
			id := strings.TrimSuffix(strings.TrimPrefix(it.Val(), prefix), "}")
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return each(ctx, c) })
	} else {
		err = each(ctx, s.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("list bookings: %w", err)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// rekeyBooking seals booking id again under the first key and renames its
// number's opt-out entry and index.
func (s *Store) rekeyBooking(ctx context.Context, id string, rep *RekeyReport) error {
	h, err := s.readLong(ctx, id, "booking", "replies", "ackp")
	if err != nil {
		return fmt.Errorf("rekey booking %s: %w", id, err)
	}
	if s.seal.on() && slices.ContainsFunc(h, func(v any) bool { return stale(s.seal, v) }) {
		_, err := s.Update(ctx, id, func(_ *aftercare.Record) (time.Time, error) {
			return s.expiry(ctx, id)
		})
		if aftercare.ErrorCode(err) == aftercare.ENOTFOUND { // expired meanwhile
			return nil
		}
		if err != nil {
			return fmt.Errorf("rekey booking %s: %w", id, err)
		}
		rep.Resealed++
	}
	rec, err := s.Get(ctx, id)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rekey booking %s: %w", id, err)
	}
	return s.rekeyNumber(ctx, rec.Booking.Patient.Phone, rep)
}

// rekeyItem seals inbox item id again under the first key and renames the
// opt-out entry and index of the number it came from.
func (s *Store) rekeyItem(ctx context.Context, id string, rep *RekeyReport) error {
	value, err := s.rdb.Get(ctx, inboxKey(id)).Result()
	if errors.Is(err, redis.Nil) { // expired; its index entry goes at the next listing
		return nil
	}
	if err != nil {
		return fmt.Errorf("rekey inbox item %s: %w", id, err)
	}
	item, err := s.openItem(id, value)
	if err != nil {
		return err
	}
	if s.seal.on() && stale(s.seal, value) {
		_, err := s.UpdateInboxItem(ctx, id, func(*aftercare.InboxItem) (time.Time, error) {
			ttl, err := s.rdb.PTTL(ctx, inboxKey(id)).Result()
			if err != nil || ttl <= 0 { // never expires (open), or an error the write would meet too
				return time.Time{}, err
			}
			return time.Now().Add(ttl), nil
		})
		if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rekey inbox item %s: %w", id, err)
		}
		rep.Resealed++
	}
	return s.rekeyNumber(ctx, item.From, rep)
}

// rekeyNumber renames phone's opt-out entry and booking index to its name
// under the first key.
func (s *Store) rekeyNumber(ctx context.Context, phone string, rep *RekeyReport) error {
	if phone == "" {
		return nil
	}
	names := s.names.names(phone)
	vals, err := s.rdb.HMGet(ctx, optOutKey, names...).Result()
	if err != nil {
		return fmt.Errorf("rekey opt-out: %w", err)
	}
	if vals[0] == nil && anyValue(vals) {
		if err := s.SetOptOut(ctx, phone, true, optOutTime(s.seal, vals)); err != nil {
			return err
		}
		rep.OptOuts++
	}
	for _, n := range names[1:] {
		moved, err := s.moveIndex(ctx, n, names[0])
		if err != nil {
			return err
		}
		if moved {
			rep.Indexes++
		}
	}
	return nil
}

// expiry is when booking id's hash expires now.
func (s *Store) expiry(ctx context.Context, id string) (time.Time, error) {
	ms, err := s.rdb.PTTL(ctx, Key(id)).Result()
	if err != nil {
		return time.Time{}, err
	}
	if ms <= 0 { // no expiry, or gone: keep a day, the next Update decides
		ms = 24 * time.Hour
	}
	return time.Now().Add(ms), nil
}

// stale reports whether a field read by HMGET is sealed under a key other
// than the first, or not sealed at all.
func stale(seal *sealer, v any) bool {
	value, ok := v.(string)
	if !ok || value == "" {
		return false
	}
	return !strings.HasPrefix(value, sealPrefix+seal.ids[0]+":")
}

// optOutTime is when the first entry found in vals says the number opted
// out; now if none says.
func optOutTime(seal *sealer, vals []any) time.Time {
	for _, v := range vals {
		value, ok := v.(string)
		if !ok {
			continue
		}
		if at, err := time.Parse(time.RFC3339, value); err == nil {
			return at
		}
		if plain, err := seal.open(value, optOutKey); err == nil {
			var o optOut
			if json.Unmarshal(plain, &o) == nil && !o.At.IsZero() {
				return o.At
			}
		}
	}
	return time.Now()
}

// moveIndex merges the number index under name from into the one under to,
// keeping the longer expiry, and removes it. Each index is one key in its own
// slot, so this is a few round trips rather than one script; run again, it
// finishes what an interrupted run began.
func (s *Store) moveIndex(ctx context.Context, from, to string) (bool, error) {
	src := phoneKeyNamed(from)
	zs, err := s.rdb.ZRangeWithScores(ctx, src, 0, -1).Result()
	if err != nil {
		return false, fmt.Errorf("rekey number index: %w", err)
	}
	if len(zs) == 0 {
		return false, nil
	}
	ttl, err := s.rdb.PTTL(ctx, src).Result()
	if err != nil {
		return false, fmt.Errorf("rekey number index: %w", err)
	}
	for _, z := range zs {
		err := indexScript.Run(ctx, s.rdb, []string{phoneKeyNamed(to)}, int64(z.Score), z.Member, max(ttl.Milliseconds(), 1)).Err()
		if err != nil {
			return false, fmt.Errorf("rekey number index: %w", err)
		}
	}
	if err := s.rdb.Del(ctx, src).Err(); err != nil {
		return false, fmt.Errorf("rekey number index: %w", err)
	}
	return true, nil
}

// rekeyOptOuts renames the opt-out entries still under an older data key's
// name: their sealed value holds the number. Entries under a legacy name
// with no booking left to name the number are counted as Unnamed.
func (s *Store) rekeyOptOuts(ctx context.Context, rep *RekeyReport) error {
	type entry struct{ name, value string }
	var old []entry
	it := s.rdb.HScan(ctx, optOutKey, 0, "*", 1000).Iterator()
	for it.Next(ctx) {
		name := it.Val()
		if !it.Next(ctx) {
			break
		}
		if !s.names.current(name) {
			old = append(old, entry{name, it.Val()})
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("rekey opt-outs: %w", err)
	}
	for _, e := range old {
		plain, err := s.seal.open(e.value, optOutKey)
		var o optOut
		switch {
		case !strings.Contains(e.name, ":"): // plain SHA-256: the value is a time
			rep.Unnamed++
			continue
		case err != nil || json.Unmarshal(plain, &o) != nil || o.Phone == "":
			rep.Unreadable++
			continue
		}
		if err := s.SetOptOut(ctx, o.Phone, true, o.At); err != nil {
			return err
		}
		rep.OptOuts++
	}
	return nil
}
