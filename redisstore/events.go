package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// The outbox of outbound events. A booking's events are its audit trail
// entries, written in the same step as the change they record, and an
// inbox item's are what its stored state says happened; so an event exists
// exactly when its change does. What is left is to notice that a booking or
// an item has events not yet handed to the webhook queue.
//
// With events on (RecordEvents), every change marks its booking ("b:ID") or
// item ("i:ID") in the sorted set aftercare:events:due, scored by when a
// relay should look at it (Unix microseconds). The mark goes to Redis before
// the change, a few seconds ahead: a process that dies between the two
// leaves a mark that a relay finds later. A change made with WATCH, which
// can take longer, marks again after it commits, for now. A relay leases
// what is due by moving its score ahead, hands the new events to the queue,
// and removes the mark only if no change marked it meanwhile. A booking
// keeps how far its trail was handed over in its field ev.
const eventsDue = "aftercare:events:due"

// Mark timing: how far ahead a mark made before its change is due, and how
// long a relay's lease lasts.
const (
	settle   = 2 * time.Second
	leaseFor = 30 * time.Second
)

// RecordEvents turns the outbox on: from now on every change this store
// makes marks its booking or inbox item for the relay. Without it, nothing
// is marked and events cost nothing. A mark that fails does not undo or
// refuse the change: failed is told (to log it loudly), and the booking's
// events wait for its next change.
func (s *Store) RecordEvents(failed func(member string, err error)) {
	s.events = true
	s.markFailed = failed
}

func bookingMark(id string) string { return "b:" + id }
func itemMark(id string) string    { return "i:" + id }

// mark queues the mark of member in p, due after delay; nil with events
// off.
func (s *Store) mark(ctx context.Context, p redis.Cmdable, member string, delay time.Duration) *redis.IntCmd {
	if !s.events {
		return nil
	}
	return p.ZAddArgs(ctx, eventsDue, redis.ZAddArgs{LT: true, Members: []redis.Z{{Score: float64(time.Now().Add(delay).UnixMicro()), Member: member}}})
}

// marked tells of the first failed mark among cmds, once they ran.
func (s *Store) marked(member string, cmds ...*redis.IntCmd) {
	for _, c := range cmds {
		if c != nil && c.Err() != nil {
			if s.markFailed != nil {
				s.markFailed(member, c.Err())
			}
			return
		}
	}
}

// markAlone marks member, due after delay, in a round trip of its own.
func (s *Store) markAlone(ctx context.Context, member string, delay time.Duration) {
	if !s.events {
		return
	}
	var cmd *redis.IntCmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { cmd = s.mark(ctx, p, member, delay); return nil })
	s.marked(member, cmd)
}

// leaseScript: KEYS[1] due; ARGV now, lease score, limit. It moves up to
// limit due members to the lease score and returns them.
var leaseScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return due
`)

// DueEvents leases up to limit bookings and items whose events are due.
func (s *Store) DueEvents(ctx context.Context, limit int) ([]aftercare.Pending, error) {
	now := time.Now()
	lease := strconv.FormatInt(now.Add(leaseFor).UnixMicro()+rand.Int64N(1000), 10)
	members, err := leaseScript.Run(ctx, s.rdb, []string{eventsDue}, now.UnixMicro(), lease, limit).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("lease due events: %w", err)
	}
	pending := make([]aftercare.Pending, 0, len(members))
	for _, m := range members {
		kind, id, _ := strings.Cut(m, ":")
		p := aftercare.Pending{Lease: lease}
		switch kind {
		case "b":
			p.BookingID = id
		case "i":
			p.ItemID = id
		default:
			continue
		}
		pending = append(pending, p)
	}
	return pending, nil
}

// DueNow makes every mark due at once, leases included: the next pass of
// a relay takes them all. Tests use it rather than wait out the delays.
func (s *Store) DueNow(ctx context.Context) error {
	members, err := s.rdb.ZRange(ctx, eventsDue, 0, -1).Result()
	if err != nil || len(members) == 0 {
		return err
	}
	zs := make([]redis.Z, len(members))
	for i, m := range members {
		zs[i] = redis.Z{Score: 0, Member: m}
	}
	return s.rdb.ZAdd(ctx, eventsDue, zs...).Err()
}

// doneScript: KEYS[1] due; ARGV member, lease. It removes the member if it
// still holds that lease (a change since has marked it again).
var doneScript = redis.NewScript(`
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`)

// EventsDone ends p's lease: its events are handed over. A booking or item
// changed meanwhile stays due.
func (s *Store) EventsDone(ctx context.Context, p aftercare.Pending) error {
	member := bookingMark(p.BookingID)
	if p.ItemID != "" {
		member = itemMark(p.ItemID)
	}
	if err := doneScript.Run(ctx, s.rdb, []string{eventsDue}, member, p.Lease).Err(); err != nil {
		return fmt.Errorf("end lease of %s: %w", member, err)
	}
	return nil
}

// maxRelay bounds the trail entries one relay pass reads.
const maxRelay = 200

// Unrelayed returns the entries of booking id's audit trail not handed over
// yet (at most maxRelay), the number of the first, and when the booking
// was created. A booking that is gone has none.
func (s *Store) Unrelayed(ctx context.Context, id string) (entries []aftercare.Event, first int, created time.Time, err error) {
	key := Key(id)
	vals, err := s.rdb.HMGet(ctx, key, "hn", "ev", "created").Result()
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("read trail of %s: %w", id, err)
	}
	if vals[0] == nil {
		return nil, 0, time.Time{}, nil // gone, or no trail yet
	}
	n, err := strconv.Atoi(str(vals[0]))
	done := 0
	if err == nil && vals[1] != nil {
		done, err = strconv.Atoi(str(vals[1]))
	}
	if err == nil {
		created, err = time.Parse(time.RFC3339Nano, str(vals[2]))
	}
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("trail of %s is damaged: %w", id, err)
	}
	if n <= done {
		return nil, 0, created, nil
	}
	first = done + 1
	fields := make([]string, 0, min(n-done, maxRelay))
	for i := first; i <= n && len(fields) < maxRelay; i++ {
		fields = append(fields, "h:"+strconv.Itoa(i))
	}
	raw, err := s.readLong(ctx, id, fields...)
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("read trail of %s: %w", id, err)
	}
	for i, v := range raw {
		e, err := decodeEntry(str(v))
		if err != nil {
			return nil, 0, time.Time{}, fmt.Errorf("trail of %s, entry %d: %w", id, first+i, err)
		}
		entries = append(entries, e)
	}
	return entries, first, created, nil
}

// relayedScript: KEYS[1] booking; ARGV entry number. It raises ev to it.
var relayedScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[1], 'ev') or '0') then
  redis.call('HSET', KEYS[1], 'ev', ARGV[1])
end
return 1
`)

// Relayed records that booking id's trail is handed over up to entry n.
func (s *Store) Relayed(ctx context.Context, id string, n int) error {
	if err := relayedScript.Run(ctx, s.rdb, []string{Key(id)}, n).Err(); err != nil {
		return fmt.Errorf("record events of %s handed over: %w", id, err)
	}
	return nil
}

// An inbox item's events handed over are the set
// aftercare:inbox:relayed:{ID} (beside its item, in its slot), kept a
// while after the item's last event.
func relayedItemKey(id string) string { return "aftercare:inbox:relayed:{" + id + "}" }

const relayedItemTTL = 400 * 24 * time.Hour

// RelayedItem returns the ids of the events of inbox item id handed over.
func (s *Store) RelayedItem(ctx context.Context, id string) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, relayedItemKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read events of %s handed over: %w", id, err)
	}
	return ids, nil
}

// ItemRelayed records that event eventID of inbox item id is handed over.
func (s *Store) ItemRelayed(ctx context.Context, id, eventID string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, relayedItemKey(id), eventID)
		p.Expire(ctx, relayedItemKey(id), relayedItemTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record event %s handed over: %w", eventID, err)
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// aftercare:webhook:disabled is a hash of the endpoints a receiver turned
// off (410 Gone): name -> JSON {at, reason}.
const disabledKey = "aftercare:webhook:disabled"

// disabled says when and why an endpoint was turned off.
type disabled struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// DisableEndpoint turns endpoint name off until EnableEndpoint.
func (s *Store) DisableEndpoint(ctx context.Context, name, reason string, at time.Time) error {
	v, _ := json.Marshal(disabled{At: at.UTC(), Reason: reason}) // cannot fail: a time and a string
	if err := s.rdb.HSet(ctx, disabledKey, name, v).Err(); err != nil {
		return fmt.Errorf("disable endpoint %s: %w", name, err)
	}
	return nil
}

// EndpointDisabled reports whether endpoint name is off.
func (s *Store) EndpointDisabled(ctx context.Context, name string) (bool, error) {
	off, err := s.rdb.HExists(ctx, disabledKey, name).Result()
	if err != nil {
		return false, fmt.Errorf("read endpoint %s: %w", name, err)
	}
	return off, nil
}

// EnableEndpoint turns endpoint name back on; it reports whether it was
// off.
func (s *Store) EnableEndpoint(ctx context.Context, name string) (bool, error) {
	n, err := s.rdb.HDel(ctx, disabledKey, name).Result()
	if err != nil {
		return false, fmt.Errorf("enable endpoint %s: %w", name, err)
	}
	return n == 1, nil
}

// DisabledEndpoints returns the endpoints that are off, by name, with
// when and why.
func (s *Store) DisabledEndpoints(ctx context.Context) (map[string]aftercare.EndpointState, error) {
	h, err := s.rdb.HGetAll(ctx, disabledKey).Result()
	if err != nil {
		return nil, fmt.Errorf("read disabled endpoints: %w", err)
	}
	off := make(map[string]aftercare.EndpointState, len(h))
	for name, v := range h {
		var d disabled
		if err := json.Unmarshal([]byte(v), &d); err != nil {
			return nil, errors.Join(fmt.Errorf("disabled endpoint %s", name), err)
		}
		off[name] = aftercare.EndpointState{Name: name, Disabled: true, DisabledAt: &d.At, Reason: d.Reason}
	}
	return off, nil
}
