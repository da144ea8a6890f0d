package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// The inbox. An item is one key, aftercare:inbox:item:{ID}, holding its
// JSON (encrypted when the store has data keys: it holds the patient's
// number and words). Sorted sets index the items by id, which sorts by
// arrival (all scores are 0, so they order by id): aftercare:inbox:all,
// aftercare:inbox:open and aftercare:inbox:open:urgent. An open item never
// expires; a resolved one expires a retention period after it was resolved,
// and its index entries go the next time a listing meets them.
// aftercare:inbox:provider:{ID} links a provider's message id to its item
// for a week, so a text delivered twice is one item.
const (
	inboxAll        = "aftercare:inbox:all"
	inboxOpen       = "aftercare:inbox:open"
	inboxOpenUrgent = "aftercare:inbox:open:urgent"
)

func inboxKey(id string) string { return "aftercare:inbox:item:{" + id + "}" }

func inboxProviderKey(providerID string) string {
	return "aftercare:inbox:provider:{" + providerID + "}"
}

// ReserveInboxID links the provider's message providerID to the inbox item
// id, unless it is linked already: then it returns the id it has, and
// false. A provider that delivers a text again (Twilio retries its
// webhooks) finds the first item's id.
func (s *Store) ReserveInboxID(ctx context.Context, providerID, id string) (string, bool, error) {
	key := inboxProviderKey(providerID)
	ok, err := s.rdb.SetNX(ctx, key, id, receiptTTL).Result()
	if err != nil {
		return "", false, fmt.Errorf("reserve inbox id: %w", err)
	}
	if ok {
		return id, true, nil
	}
	had, err := s.rdb.Get(ctx, key).Result()
	if err != nil {
		return "", false, fmt.Errorf("read inbox id: %w", err)
	}
	return had, false, nil
}

// PutInboxItem stores item and indexes it; it expires at expireAt unless
// that is zero. Putting the same item again changes nothing else.
func (s *Store) PutInboxItem(ctx context.Context, item *aftercare.InboxItem, expireAt time.Time) error {
	value, err := s.sealItem(item)
	if err != nil {
		return err
	}
	var before, after *redis.IntCmd
	cmds, _ := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		var ttl time.Duration
		if !expireAt.IsZero() {
			ttl = max(time.Until(expireAt), time.Second)
		}
		before = s.mark(ctx, p, itemMark(item.ID), settle)
		p.Set(ctx, inboxKey(item.ID), value, ttl)
		s.index(ctx, p, item)
		after = s.mark(ctx, p, itemMark(item.ID), 0)
		return nil
	})
	s.marked(itemMark(item.ID), before, after)
	for _, c := range cmds { // the item and its indexes; a mark that failed is told above
		if c != before && c != after && c.Err() != nil {
			err = c.Err()
			break
		}
	}
	if err != nil {
		return fmt.Errorf("store inbox item %s: %w", item.ID, err)
	}
	return nil
}

// index puts item in the sorted sets its status and urgency call for, and
// takes it out of the others.
func (s *Store) index(ctx context.Context, p redis.Pipeliner, item *aftercare.InboxItem) {
	member := redis.Z{Member: item.ID}
	p.ZAdd(ctx, inboxAll, member)
	open := item.Status == aftercare.InboxOpen
	for key, in := range map[string]bool{inboxOpen: open, inboxOpenUrgent: open && item.Urgency == aftercare.Urgent} {
		if in {
			p.ZAdd(ctx, key, member)
		} else {
			p.ZRem(ctx, key, item.ID)
		}
	}
}

func (s *Store) sealItem(item *aftercare.InboxItem) (string, error) {
	data, err := json.Marshal(item)
	if err != nil {
		return "", err
	}
	return s.seal.seal(data, inboxKey(item.ID)), nil
}

func (s *Store) openItem(id, value string) (*aftercare.InboxItem, error) {
	data, err := s.seal.open(value, inboxKey(id))
	if err != nil {
		return nil, fmt.Errorf("inbox item %s: %w", id, err)
	}
	var item aftercare.InboxItem
	if err := json.Unmarshal(data, &item); err != nil {
		return nil, fmt.Errorf("inbox item %s is damaged: %w", id, err)
	}
	return &item, nil
}

// InboxItem returns the item id, or an ENOTFOUND error.
func (s *Store) InboxItem(ctx context.Context, id string) (*aftercare.InboxItem, error) {
	value, err := s.rdb.Get(ctx, inboxKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no inbox item %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read inbox item: %w", err)
	}
	return s.openItem(id, value)
}

// UpdateInboxItem applies change to item id atomically, starting over if
// the item changed meanwhile, and re-indexes it. change returns when the
// item should expire (zero: never); an error from it aborts the update and
// is returned as is.
func (s *Store) UpdateInboxItem(ctx context.Context, id string, change func(item *aftercare.InboxItem) (time.Time, error)) (*aftercare.InboxItem, error) {
	key := inboxKey(id)
	var item *aftercare.InboxItem
	txf := func(tx *redis.Tx) error {
		value, err := tx.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return aftercare.Errorf(aftercare.ENOTFOUND, "no inbox item %q", id)
		}
		if err != nil {
			return err
		}
		if item, err = s.openItem(id, value); err != nil {
			return err
		}
		expireAt, err := change(item)
		if err != nil {
			return err
		}
		sealed, err := s.sealItem(item)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			var ttl time.Duration
			if !expireAt.IsZero() {
				ttl = max(time.Until(expireAt), time.Second)
			}
			p.Set(ctx, key, sealed, ttl)
			return nil
		})
		return err
	}
	s.markAlone(ctx, itemMark(id), settle)
	if err := s.watch(ctx, "update inbox item "+id, txf, key); err != nil {
		return nil, err
	}
	s.markAlone(ctx, itemMark(id), 0)
	// The indexes are in other slots: kept in line after the change, and
	// again by any later change.
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { s.index(ctx, p, item); return nil }); err != nil {
		return nil, fmt.Errorf("index inbox item %s: %w", id, err)
	}
	return item, nil
}

// InboxItems lists the items f picks, newest first, at most limit of them,
// starting after the item named by cursor ("" for the newest). It returns
// the cursor of the next page, "" after the last.
func (s *Store) InboxItems(ctx context.Context, f aftercare.InboxFilter, cursor string, limit int) ([]*aftercare.InboxItem, string, error) {
	index := inboxAll
	switch {
	case f.Status == aftercare.InboxOpen && f.Urgency == aftercare.Urgent:
		index = inboxOpenUrgent
	case f.Status == aftercare.InboxOpen:
		index = inboxOpen
	}
	var items []*aftercare.InboxItem
	for len(items) < limit {
		max := "+"
		if cursor != "" {
			max = "(" + cursor
		}
		ids, err := s.rdb.ZRevRangeByLex(ctx, index, &redis.ZRangeBy{Max: max, Min: "-", Count: int64(limit)}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list inbox: %w", err)
		}
		if len(ids) == 0 {
			return items, "", nil
		}
		found, err := s.items(ctx, index, ids)
		if err != nil {
			return nil, "", err
		}
		for i, item := range found {
			cursor = ids[i]
			if item != nil && f.Match(item) {
				items = append(items, item)
				if len(items) == limit {
					break
				}
			}
		}
	}
	return items, cursor, nil
}

// items reads the items ids name, nil for those that have expired, whose
// entries in index it removes.
func (s *Store) items(ctx context.Context, index string, ids []string) ([]*aftercare.InboxItem, error) {
	cmds := make([]*redis.StringCmd, len(ids))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, inboxKey(id))
		}
		return nil
	}) // each command carries its own error
	items := make([]*aftercare.InboxItem, len(ids))
	for i, cmd := range cmds {
		value, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			s.rdb.ZRem(ctx, index, ids[i])
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read inbox item: %w", err)
		}
		if items[i], err = s.openItem(ids[i], value); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// InboxStats counts the open items by urgency and finds the oldest open
// urgent one.
func (s *Store) InboxStats(ctx context.Context) (aftercare.InboxStats, error) {
	var st aftercare.InboxStats
	var open, urgent *redis.IntCmd
	var oldest *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		open = p.ZCard(ctx, inboxOpen)
		urgent = p.ZCard(ctx, inboxOpenUrgent)
		oldest = p.ZRangeByLex(ctx, inboxOpenUrgent, &redis.ZRangeBy{Min: "-", Max: "+", Count: 1})
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("inbox stats: %w", err)
	}
	st.OpenUrgent = int(urgent.Val())
	st.OpenNormal = int(open.Val()) - st.OpenUrgent
	if ids := oldest.Val(); len(ids) == 1 {
		st.OldestUrgent = aftercare.InboxIDTime(ids[0])
	}
	return st, nil
}
