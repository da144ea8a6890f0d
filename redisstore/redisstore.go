// Package redisstore keeps booking records in Redis, one hash per booking,
// and changes message states with Lua scripts so that a check and the change
// it guards happen in one round trip.
package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// Store is a Redis-backed booking store.
//
// A booking lives in two hashes (the braces keep both in one Redis Cluster
// slot). aftercare:booking:{ID} holds the short fields, which the scripts
// check and change:
//
//	fp        fingerprint of the request that created it
//	created   when it was created (RFC 3339)
//	version   booking version, starting at 1
//	status    scheduled | cancelled
//	m:STEP:CH status of one message
//	p:STEP:CH provider id of one message
//	c:STEP:CH when the message was last claimed (Unix ms)
//	hn        count of audit trail entries
//	ev        how many entries the event relay has handed over (events.go)
//
// and aftercare:booking:{ID}:body the long ones (see inBody):
//
//	booking   JSON of the booking, with the patient's contact details
//	          (encrypted when the store has data keys)
//	plan      the planned messages, a line each: step, channel, send_at,
//	          deadline, note (plan.go; JSON in earlier releases)
//	e:STEP:CH last error of one message
//	d:STEP:CH digest of the text sent of one message
//	ack       JSON of the consent acknowledgement (records written before
//	          it had a method hold the time alone, RFC 3339)
//	ackp      JSON of the evidence behind an acknowledgement on the consent
//	          page: typed name, address, browser, text shown (encrypted
//	          like the booking)
//	replies   JSON list of the patient's texts about the booking, by inbox
//	          item (encrypted likewise)
//	h:N       audit trail entry N as JSON
//
// Redis keeps a hash of short values in a compact encoding (listpack) and
// one with any value over 64 bytes as a table, at several times the
// memory: the split keeps the first compact. Earlier releases kept every
// field in the first hash; such a record is read as it is (a field is
// wherever it is found), gains its long fields in the body as it changes,
// and is rewritten in two at its next update.
//
// Both hashes expire a retention period after the booking's last deadline.
//
// Beside the bookings, aftercare:optout is a hash of the numbers that
// replied STOP (each value, with data keys, the number and the time,
// encrypted, so that Rekey can rename it), and aftercare:phone:{NAME} a
// sorted set of the bookings of one number, newest last; both name a number
// by a keyed digest (see namer), never in plain text. aftercare:sid:SID links a sent SMS's Twilio SID to
// its message (the task payload) for a week, for delivery receipts.
// aftercare:sealed is the set of the ids of the data keys records are
// sealed with, so that a store without keys, or with others, will not
// write beside them (plain.go).
type Store struct {
	rdb   redis.UniversalClient
	seal  *sealer
	names *namer
	// events: changes mark their booking or item for the event relay;
	// markFailed hears of a mark that failed.
	events     bool
	markFailed func(member string, err error)
	// plainFound hears of a record found in plain text; guardNext is when
	// guard next looks (Unix ns).
	plainFound func(id string)
	guardNext  atomic.Int64
}

// New returns a Store on rdb that keeps records in plain text.
func New(rdb redis.UniversalClient) *Store {
	s, _ := NewSealed(rdb, nil) // no keys: cannot fail
	return s
}

// NewSealed returns a Store on rdb that encrypts the patient data of each
// record (the booking and the patient's replies) with AES-256-GCM under
// keys[0]; every key decrypts, for rotation. Numbers are named in the
// opt-out list and the number index by an HMAC under a key derived from
// keys[0]; every key's name is looked up.
func NewSealed(rdb redis.UniversalClient, keys [][]byte) (*Store, error) {
	seal, err := newSealer(keys)
	if err != nil {
		return nil, err
	}
	names, err := newNamer(keys, seal.ids)
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, seal: seal, names: names}, nil
}

// Key is the Redis key of booking id's record (its short fields).
func Key(id string) string { return "aftercare:booking:{" + id + "}" }

// BodyKey is the Redis key of the long fields of booking id's record.
func BodyKey(id string) string { return Key(id) + ":body" }

// inBody reports whether record field f is kept in the body.
func inBody(f string) bool {
	switch f {
	case "booking", "plan", "ack", "ackp", "replies":
		return true
	}
	return strings.HasPrefix(f, "h:") || strings.HasPrefix(f, "e:") || strings.HasPrefix(f, "d:")
}

type planned struct {
	Step     string            `json:"step"`
	Channel  aftercare.Channel `json:"channel"`
	SendAt   time.Time         `json:"send_at"`
	Deadline time.Time         `json:"deadline"`
	Note     string            `json:"note,omitempty"`
}

// createScript: KEYS[1] record, KEYS[2] its body; ARGV expiry (Unix ms),
// the number n of the record's fields, then field, value pairs: n for the
// record, the rest for the body.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local split = 3 + 2 * tonumber(ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3, split - 1))
redis.call('HSET', KEYS[2], unpack(ARGV, split))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
return 1
`)

// Create stores rec unless booking rec.ID exists; then it returns the stored
// record and false.
func (s *Store) Create(ctx context.Context, rec *aftercare.Record, expireAt time.Time) (*aftercare.Record, bool, error) {
	if err := s.guard(ctx); err != nil {
		return nil, false, fmt.Errorf("create booking record: %w", err)
	}
	short, long, err := s.encode(rec)
	if err != nil {
		return nil, false, err
	}
	args := append(append([]any{expireAt.UnixMilli(), len(short) / 2}, short...), long...)
	var before, after *redis.IntCmd
	n, err := s.runAfter(ctx, func(p redis.Pipeliner) { before = s.mark(ctx, p, bookingMark(rec.ID), settle) },
		createScript, []string{Key(rec.ID), BodyKey(rec.ID)}, args,
		func(p redis.Pipeliner) { after = s.mark(ctx, p, bookingMark(rec.ID), 0) }).Int()
	s.marked(bookingMark(rec.ID), before, after)
	if err != nil {
		return nil, false, fmt.Errorf("create booking record: %w", err)
	}
	if n == 1 {
		return rec, true, nil
	}
	stored, err := s.Get(ctx, rec.ID)
	return stored, false, err
}

// maxUpdateTries bounds how often Update starts over because a worker
// changed the record under it.
const maxUpdateTries = 20

// Update reads booking id, lets change edit it, and writes the result back
// atomically: if anything touched the record in between (a worker claiming
// or recording a message), it starts over with the fresh record, so change
// always decides on the current state. change returns when the record should
// expire; an error from change aborts the update and is returned as is.
func (s *Store) Update(ctx context.Context, id string, change func(rec *aftercare.Record) (time.Time, error)) (*aftercare.Record, error) {
	key, body := Key(id), BodyKey(id)
	var rec *aftercare.Record
	txf := func(tx *redis.Tx) error {
		h, err := read(ctx, tx.Pipelined, id) // not MULTI: its EXEC would end the WATCH
		if err != nil {
			return err
		}
		if rec, err = s.decode(id, h); err != nil {
			return fmt.Errorf("booking record %s is damaged: %w", id, err)
		}
		expireAt, err := change(rec)
		if err != nil {
			return err
		}
		short, long, err := s.encode(rec)
		if err != nil {
			return err
		}
		if ev, ok := h["ev"]; ok { // how far the event relay has read the trail
			short = append(short, "ev", ev)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, key, body)
			p.HSet(ctx, key, short...)
			p.HSet(ctx, body, long...)
			p.PExpireAt(ctx, key, expireAt)
			p.PExpireAt(ctx, body, expireAt)
			return nil
		})
		return err
	}
	s.markAlone(ctx, bookingMark(id), settle)
	if err := s.watch(ctx, "update booking "+id, txf, key, body); err != nil {
		return nil, err
	}
	s.markAlone(ctx, bookingMark(id), 0)
	return rec, nil
}

// watch runs txf in a WATCH on keys, starting over (up to maxUpdateTries
// times) when one changed before txf's transaction could commit. An error
// of txf's own is returned as is.
func (s *Store) watch(ctx context.Context, what string, txf func(tx *redis.Tx) error, keys ...string) error {
	for range maxUpdateTries {
		err := s.rdb.Watch(ctx, txf, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("%s: it kept changing; try again", what)
}

// encode lays rec out as hash fields (without the expiry): short, the
// record's, and long, its body's (see inBody).
func (s *Store) encode(rec *aftercare.Record) (short, long []any, err error) {
	fields, err := s.fields(rec)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < len(fields); i += 2 {
		if inBody(fields[i].(string)) {
			long = append(long, fields[i], fields[i+1])
		} else {
			short = append(short, fields[i], fields[i+1])
		}
	}
	return short, long, nil
}

// fields lays rec out as field, value pairs.
func (s *Store) fields(rec *aftercare.Record) ([]any, error) {
	booking, err := json.Marshal(rec.Booking)
	if err != nil {
		return nil, err
	}
	key := Key(rec.ID)
	plan := make([]planned, len(rec.Messages))
	for i, m := range rec.Messages {
		plan[i] = planned{Step: m.Step, Channel: m.Channel, SendAt: m.SendAt, Deadline: m.Deadline, Note: m.Note}
	}
	planText, err := encodePlan(plan)
	if err != nil {
		return nil, err
	}
	fields := []any{
		"booking", s.seal.seal(booking, key+"/booking"),
		"fp", rec.Fingerprint,
		"created", rec.CreatedAt.UTC().Format(time.RFC3339Nano),
		"version", rec.Version,
		"status", string(rec.Status),
		"plan", planText,
	}
	if ack := rec.ConsentAcknowledgement; ack != nil {
		data, err := json.Marshal(ack)
		if err != nil {
			return nil, err
		}
		fields = append(fields, "ack", data)
	}
	if ev := rec.Evidence; ev != nil {
		data, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		fields = append(fields, "ackp", s.seal.seal(data, key+"/ackp"))
	}
	if len(rec.Replies) > 0 {
		replies, err := json.Marshal(rec.Replies)
		if err != nil {
			return nil, err
		}
		fields = append(fields, "replies", s.seal.seal(replies, key+"/replies"))
	}
	for i, a := range rec.History {
		entry, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		fields = append(fields, "h:"+strconv.Itoa(i+1), entry)
	}
	if len(rec.History) > 0 {
		fields = append(fields, "hn", len(rec.History))
	}
	for _, m := range rec.Messages {
		f := field(m.Ref("", 0))
		fields = append(fields, "m:"+f, string(m.Status))
		if m.ProviderID != "" {
			fields = append(fields, "p:"+f, m.ProviderID)
		}
		if m.Error != "" { // a provider's words can quote an address: never stored as they came
			fields = append(fields, "e:"+f, aftercare.Redact(m.Error))
		}
		if m.Digest != "" {
			fields = append(fields, "d:"+f, m.Digest)
		}
		if !m.ClaimedAt.IsZero() {
			fields = append(fields, "c:"+f, claimTime(m.ClaimedAt))
		}
	}
	return fields, nil
}

// States returns the timeline of booking id as its record's own hash has
// it, without the body: its version and status, and each message's step,
// channel and status (no times, no trail). It needs no decryption and
// reads a few hundred bytes, for a caller that checks no more than that.
func (s *Store) States(ctx context.Context, id string) (*aftercare.Timeline, error) {
	h, err := s.rdb.HGetAll(ctx, Key(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read booking record: %w", err)
	}
	if len(h) == 0 {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	tl := &aftercare.Timeline{ID: id, Status: aftercare.BookingStatus(h["status"])}
	if tl.Version, err = strconv.Atoi(h["version"]); err != nil {
		return nil, fmt.Errorf("booking record %s is damaged: version: %w", id, err)
	}
	for f, v := range h {
		if rest, ok := strings.CutPrefix(f, "m:"); ok {
			step, ch, _ := strings.Cut(rest, ":")
			tl.Messages = append(tl.Messages, aftercare.Message{Step: step, Channel: aftercare.Channel(ch), Status: aftercare.MessageStatus(v)})
		}
	}
	return tl, nil
}

// read returns the fields of booking id's record and body, in one round
// trip of pipeline (a MULTI reads both as of one instant), or an ENOTFOUND
// error if it has no record.
func read(ctx context.Context, pipeline func(context.Context, func(redis.Pipeliner) error) ([]redis.Cmder, error), id string) (map[string]string, error) {
	var short, long *redis.MapStringStringCmd
	if _, err := pipeline(ctx, func(p redis.Pipeliner) error {
		short, long = p.HGetAll(ctx, Key(id)), p.HGetAll(ctx, BodyKey(id))
		return nil
	}); err != nil {
		return nil, err
	}
	h := short.Val()
	if len(h) == 0 {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	maps.Copy(h, long.Val())
	return h, nil
}

// readLong returns the values of the named long fields of booking id, in
// one round trip: each from the body or, where an earlier release left it,
// from the record itself; nil for a field in neither.
func (s *Store) readLong(ctx context.Context, id string, fields ...string) ([]any, error) {
	var long, short *redis.SliceCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		long, short = p.HMGet(ctx, BodyKey(id), fields...), p.HMGet(ctx, Key(id), fields...)
		return nil
	}); err != nil {
		return nil, err
	}
	vals := long.Val()
	for i, v := range short.Val() {
		if vals[i] == nil {
			vals[i] = v
		}
	}
	return vals, nil
}

// Get returns the record of booking id, or an ENOTFOUND error.
func (s *Store) Get(ctx context.Context, id string) (*aftercare.Record, error) {
	h, err := read(ctx, s.rdb.TxPipelined, id)
	if aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read booking record: %w", err)
	}
	rec, err := s.decode(id, h)
	if err != nil {
		return nil, fmt.Errorf("booking record %s is damaged: %w", id, err)
	}
	s.sealFound(ctx, id, h)
	return rec, nil
}

func (s *Store) decode(id string, h map[string]string) (*aftercare.Record, error) {
	rec := &aftercare.Record{Fingerprint: h["fp"]}
	rec.ID = id
	rec.Status = aftercare.BookingStatus(h["status"])
	var err error
	if rec.Version, err = strconv.Atoi(h["version"]); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	if rec.CreatedAt, err = time.Parse(time.RFC3339Nano, h["created"]); err != nil {
		return nil, fmt.Errorf("created: %w", err)
	}
	if err := s.openJSON(id, h, "booking", &rec.Booking); err != nil {
		return nil, err
	}
	plan, err := decodePlan(h["plan"])
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	loc := rec.Booking.Location()
	if v := h["ack"]; v != "" {
		ack, err := decodeAck(v)
		if err != nil {
			return nil, fmt.Errorf("ack: %w", err)
		}
		ack.At = ack.At.In(loc)
		rec.ConsentAcknowledgement, rec.ConsentAcknowledgedAt = ack, &ack.At
	}
	if h["ackp"] != "" {
		rec.Evidence = new(aftercare.ConsentEvidence)
		if err := s.openJSON(id, h, "ackp", rec.Evidence); err != nil {
			return nil, err
		}
	}
	if h["replies"] != "" {
		if err := s.openJSON(id, h, "replies", &rec.Replies); err != nil {
			return nil, err
		}
	}
	if rec.History, err = decodeHistory(h); err != nil {
		return nil, err
	}
	rec.Messages = make([]aftercare.Message, len(plan))
	for i, p := range plan {
		rec.Messages[i] = decodeMessage(p, h, loc)
	}
	return rec, nil
}

// openJSON opens the sealed JSON field name of booking id's hash h into v.
func (s *Store) openJSON(id string, h map[string]string, name string, v any) error {
	data, err := s.seal.open(h[name], Key(id)+"/"+name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// decodeHistory reads the audit trail entries h:1 to h:hn.
func decodeHistory(h map[string]string) ([]aftercare.Event, error) {
	n, _ := strconv.Atoi(h["hn"])
	if n <= 0 {
		return nil, nil
	}
	history := make([]aftercare.Event, 0, n)
	for i := 1; i <= n; i++ {
		a, err := decodeEntry(h["h:"+strconv.Itoa(i)])
		if err != nil {
			return nil, fmt.Errorf("history %d: %w", i, err)
		}
		history = append(history, a)
	}
	return history, nil
}

// decodeMessage joins a planned message with its state in h, in the
// booking's zone loc.
func decodeMessage(p planned, h map[string]string, loc *time.Location) aftercare.Message {
	m := aftercare.Message{Step: p.Step, Channel: p.Channel, SendAt: p.SendAt.In(loc), Deadline: p.Deadline.In(loc), Note: p.Note}
	f := field(m.Ref("", 0))
	m.Status = aftercare.MessageStatus(h["m:"+f])
	m.ProviderID = h["p:"+f]
	m.Error = h["e:"+f]
	m.Digest = h["d:"+f]
	if ms, err := strconv.ParseInt(h["c:"+f], 10, 64); err == nil {
		m.ClaimedAt = time.UnixMilli(ms)
	}
	if m.Status == aftercare.StatusFailed && strings.HasPrefix(m.Error, legacyUnknown) {
		m.Status = aftercare.StatusOutcomeUnknown
	}
	return m
}

// decodeEntry reads an audit trail entry, in the form it has now whenever
// it was written.
func decodeEntry(v string) (aftercare.Event, error) {
	var e aftercare.Event
	if err := json.Unmarshal([]byte(v), &e); err != nil {
		return e, err
	}
	if e.Outcome == legacyUncertain {
		e.Outcome = aftercare.OutcomeUnknown
	}
	if e.Kind == "" { // written before the trail had kinds: a send
		e.Kind = aftercare.EventSend
	}
	return e, nil
}

// decodeAck reads the ack field: JSON, or the bare time records written
// before the acknowledgement had a method kept (a YES by SMS).
func decodeAck(v string) (*aftercare.Acknowledgement, error) {
	if !strings.HasPrefix(v, "{") {
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, err
		}
		return &aftercare.Acknowledgement{At: at, Method: aftercare.AckBySMS}, nil
	}
	var ack aftercare.Acknowledgement
	if err := json.Unmarshal([]byte(v), &ack); err != nil {
		return nil, err
	}
	return &ack, nil
}

// Records written before outcome_unknown was a status of its own (see the
// migration notes in the README) keep such a message as failed with an
// error that starts "outcome unknown", and the attempt's outcome as
// "uncertain"; decode reads both as outcome unknown.
const (
	legacyUnknown                     = "outcome unknown"
	legacyUncertain aftercare.Outcome = "uncertain"
)

// claimScript: KEYS[1] booking; ARGV version, message field, "1" if the
// message may go out on a cancelled booking (the cancellation notice). It
// returns the message's status before the call, "cancelled" if the booking
// is cancelled or at another version, or nil if there is no such message; a
// scheduled message becomes sending.
var claimScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'version', 'status', 'm:' .. ARGV[2])
if not h[1] or not h[3] then return false end
if h[1] ~= ARGV[1] or (h[2] == 'cancelled' and ARGV[3] ~= '1') then return 'cancelled' end
if h[3] == 'scheduled' then redis.call('HSET', KEYS[1], 'm:' .. ARGV[2], 'sending', 'c:' .. ARGV[2], ARGV[4]) end
return h[3]
`)

// reclaimScript: KEYS[1] booking; ARGV message field, the claim time the
// caller saw, the new claim time. It returns 1 if the message was still
// sending under that claim, which is now the caller's.
var reclaimScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'm:' .. ARGV[1], 'c:' .. ARGV[1])
if h[1] ~= 'sending' or (h[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'c:' .. ARGV[1], ARGV[3])
return 1
`)

// Reclaim takes over a message left sending under the claim made at
// claimedAt (a run that stopped, or got no answer from the provider), as
// of now, for the one run that resolves it; it reports false if another run
// took it first or it is no longer sending.
func (s *Store) Reclaim(ctx context.Context, ref aftercare.MessageRef, claimedAt, now time.Time) (bool, error) {
	n, err := reclaimScript.Run(ctx, s.rdb, []string{Key(ref.BookingID)}, field(ref), claimTime(claimedAt), claimTime(now)).Int()
	if err != nil {
		return false, fmt.Errorf("reclaim %s: %w", ref.TaskID(), err)
	}
	return n == 1, nil
}

// claimTime writes a claim time as the c: field holds it: Unix
// milliseconds, "" for none.
func claimTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// Claim moves the message ref names from scheduled to sending as of now,
// keeping the claim's time (see Reclaim), in the same
// round trip that checks the booking is still at ref's version and not
// cancelled. It returns the status the message had: StatusScheduled means
// the caller now owns the send. A cancelled or superseded booking reports
// StatusCancelled. A missing record or message is an ENOTFOUND error.
//
// Given a phone number, Claim also reports, in the same round trip,
// whether the number opted out of SMS (see OptedOut).
func (s *Store) Claim(ctx context.Context, ref aftercare.MessageRef, phone string, now time.Time) (aftercare.MessageStatus, bool, error) {
	keys := []string{Key(ref.BookingID)}
	args := []any{ref.Version, field(ref), flag(ref.SurvivesCancel()), claimTime(now)}
	var (
		res *redis.Cmd
		out *redis.SliceCmd
	)
	if phone == "" {
		res = claimScript.Run(ctx, s.rdb, keys, args...)
	} else {
		res = s.runAfter(ctx, func(p redis.Pipeliner) { out = p.HMGet(ctx, optOutKey, s.names.names(phone)...) }, claimScript, keys, args, nil)
	}
	st, err := res.Text()
	if errors.Is(err, redis.Nil) {
		return "", false, aftercare.Errorf(aftercare.ENOTFOUND, "no message %s", ref.TaskID())
	}
	if err != nil {
		return "", false, fmt.Errorf("claim %s: %w", ref.TaskID(), err)
	}
	if out == nil {
		return aftercare.MessageStatus(st), false, nil
	}
	if err := out.Err(); err != nil {
		return "", false, fmt.Errorf("claim %s: read opt-out: %w", ref.TaskID(), err)
	}
	return aftercare.MessageStatus(st), anyValue(out.Val()), nil
}

// anyValue reports whether an HMGET found any of its fields.
func anyValue(vals []any) bool {
	for _, v := range vals {
		if v != nil {
			return true
		}
	}
	return false
}

// runAfter runs script in the same round trip as the commands before puts
// in a pipeline ahead of it and after puts behind it (either may be nil): a
// pipeline rather than one script, since Redis Cluster keeps the booking and
// the other keys in different slots. If Redis has not cached the script
// yet, it runs again on its own, which loads it, followed by after's
// commands again. It returns the script's result; the queued commands hold
// their own.
func (s *Store) runAfter(ctx context.Context, before func(p redis.Pipeliner), script *redis.Script, keys []string, args []any, after func(p redis.Pipeliner)) *redis.Cmd {
	var res *redis.Cmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if before != nil {
			before(p)
		}
		res = script.EvalSha(ctx, p, keys, args...)
		if after != nil {
			after(p)
		}
		return nil
	}) // each command carries its own error
	if redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		res = script.Run(ctx, s.rdb, keys, args...)
		if after != nil {
			_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { after(p); return nil })
		}
	}
	return res
}

// transitionScript: KEYS[1] record, KEYS[2] its body; ARGV message field, from, version,
// then the status and reason of the change's three targets (to, if
// cancelled, if superseded), the provider id, the attempt JSON and the
// digest of the text sent. It
// returns 1 if it changed the message, else 0.
//
// The message changes only if it is in status from; the target is the
// first of: if the booking is cancelled, if it is at another version, to.
// An empty target status leaves the message as it is. The script applies
// the change's rules (aftercare.MessageRef.Change); it makes none.
//
// The attempt is added to the history whether or not the message changed,
// unless the record has expired, or the attempt is already the last entry
// (the call was retried after a lost reply). ARGV[11] is the entry's JSON
// without its closing brace: the script closes it with the status it left
// the message in, or with "unchanged", so that the entry (and the event it
// makes) says what really happened.
var transitionScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'version', 'm:' .. ARGV[1], 'status', 'hn')
local changed = 0
local entry = ARGV[11] .. ',"unchanged":true}'
local function long(field, value) -- a body field; an earlier release kept it in the record
  redis.call('HSET', KEYS[2], field, value)
  redis.call('HDEL', KEYS[1], field)
end
if h[2] == ARGV[2] then
  local to, reason = ARGV[4], ARGV[5]
  if h[3] == 'cancelled' then
    to, reason = ARGV[6], ARGV[7]
  elseif h[1] ~= ARGV[3] then
    to, reason = ARGV[8], ARGV[9]
  end
  if to ~= '' then
    redis.call('HSET', KEYS[1], 'm:' .. ARGV[1], to)
    long('e:' .. ARGV[1], reason)
    if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'p:' .. ARGV[1], ARGV[10]) end
    if ARGV[12] ~= '' then long('d:' .. ARGV[1], ARGV[12]) end
    changed = 1
    entry = ARGV[11] .. ',"status":"' .. to .. '"}'
  end
end
local last = h[4] and (redis.call('HGET', KEYS[2], 'h:' .. h[4]) or redis.call('HGET', KEYS[1], 'h:' .. h[4]))
if redis.call('EXISTS', KEYS[1]) == 1 and not (last and string.sub(last, 1, #ARGV[11]) == ARGV[11]) then
  local n = redis.call('HINCRBY', KEYS[1], 'hn', 1)
  redis.call('HSET', KEYS[2], 'h:' .. n, entry)
end
if redis.call('PTTL', KEYS[2]) == -1 then -- a body just begun for an earlier release's record
  local ttl = redis.call('PTTL', KEYS[1]) -- lives as long as the record (Create and Update set both)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return changed
`)

// Transition makes change c to the message it names (see aftercare.Change),
// storing the provider id (if not empty) and the reason (an empty one
// clears the message's error), and adds c.Event to the booking's
// history. It reports false, leaving the message as it is, if the message
// is not in status c.From or the change leaves it; the attempt is added
// all the same, unless the record has expired. A change the domain does not
// allow (aftercare.MessageStatus.CanBecome) is an error.
//
// An SMS that goes to sent with a provider id (a Twilio SID) is also
// linked to it for its delivery receipts (ByProvider), and the receipts
// that came for it before (KeepReceipt) are read, in the same round trip:
// early, for the caller to apply, then to drop (DropEarlyReceipts).
func (s *Store) Transition(ctx context.Context, c aftercare.Change) (changed bool, early []aftercare.Receipt, err error) {
	for _, t := range []aftercare.Target{c.To, c.IfCancelled, c.IfSuperseded} {
		if t.Status != "" && !c.From.CanBecome(t.Status) {
			return false, nil, aftercare.Errorf(aftercare.EINVALID, "record %s: a message cannot go from %s to %s", c.Ref.TaskID(), c.From, t.Status)
		}
	}
	c.Event.Detail = aftercare.Redact(c.Event.Detail)
	c.Event.Status, c.Event.Unchanged = "", false // the script says which
	entry, err := json.Marshal(c.Event)
	if err != nil {
		return false, nil, err
	}
	entry = entry[:len(entry)-1] // the script closes it
	keys := []string{Key(c.Ref.BookingID), BodyKey(c.Ref.BookingID)}
	args := []any{field(c.Ref), string(c.From), c.Ref.Version,
		string(c.To.Status), aftercare.Redact(c.To.Reason), string(c.IfCancelled.Status), aftercare.Redact(c.IfCancelled.Reason),
		string(c.IfSuperseded.Status), aftercare.Redact(c.IfSuperseded.Reason), c.ProviderID, entry, c.Digest}
	var (
		res           *redis.Cmd
		link          *redis.StatusCmd
		kept          *redis.StringSliceCmd
		before, after *redis.IntCmd
	)
	member := bookingMark(c.Ref.BookingID)
	linked := c.Ref.Channel == aftercare.SMS && c.To.Status == aftercare.StatusSent && c.ProviderID != ""
	if linked || s.events {
		// The link goes first: a receipt for a message that reads sent
		// finds it. The events mark goes both before (should this process
		// die before the script) and after (should a relay finish with the
		// booking in between).
		res = s.runAfter(ctx, func(p redis.Pipeliner) {
			before = s.mark(ctx, p, member, settle)
			if linked {
				link = p.Set(ctx, sidKey(c.ProviderID), c.Ref.Payload(), receiptTTL)
				kept = p.LRange(ctx, keptKey(c.ProviderID), 0, -1)
			}
		}, transitionScript, keys, args, func(p redis.Pipeliner) { after = s.mark(ctx, p, member, 0) })
		s.marked(member, before, after)
	} else {
		res = transitionScript.Run(ctx, s.rdb, keys, args...)
	}
	n, err := res.Int()
	if err == nil && link != nil && link.Err() != nil {
		err = fmt.Errorf("link provider id: %w", link.Err())
	}
	if err == nil && kept != nil {
		early, err = decodeReceipts(kept.Val())
	}
	if err != nil {
		return false, nil, fmt.Errorf("record %s %s: %w", c.Ref.TaskID(), c.To.Status, err)
	}
	return n == 1, early, nil
}

// flag is a boolean as a script argument.
func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// field names a message inside its booking's hash.
func field(ref aftercare.MessageRef) string { return ref.Step + ":" + string(ref.Channel) }

const optOutKey = "aftercare:optout"

func (s *Store) phoneKey(phone string) string { return phoneKeyNamed(s.names.name(phone)) }

func phoneKeyNamed(name string) string { return "aftercare:phone:{" + name + "}" }

// optOut is an opt-out entry's value when the store has data keys: sealed,
// so that only the keys' holder can read the number back (to rename the
// entry under a new key, see Rekey).
type optOut struct {
	Phone string    `json:"phone"`
	At    time.Time `json:"at"`
}

// optOutValue is what the opt-out list holds for phone: with data keys the
// number and the time, sealed; without, the time alone.
func (s *Store) optOutValue(phone string, at time.Time) string {
	at = at.UTC().Truncate(time.Second)
	if !s.seal.on() {
		return at.Format(time.RFC3339)
	}
	data, _ := json.Marshal(optOut{Phone: phone, At: at}) // cannot fail
	return s.seal.seal(data, optOutKey)
}

// SetOptOut records that phone opted out of SMS (out) or back in. An opt-out
// is written under the current name and removed from the others; an opt-in
// removes it under every name.
func (s *Store) SetOptOut(ctx context.Context, phone string, out bool, at time.Time) error {
	names := s.names.names(phone)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if out {
			p.HSet(ctx, optOutKey, names[0], s.optOutValue(phone, at))
			names = names[1:]
		}
		if len(names) > 0 {
			p.HDel(ctx, optOutKey, names...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record opt-out: %w", err)
	}
	return nil
}

// OptedOut reports whether phone has opted out of SMS.
func (s *Store) OptedOut(ctx context.Context, phone string) (bool, error) {
	vals, err := s.rdb.HMGet(ctx, optOutKey, s.names.names(phone)...).Result()
	if err != nil {
		return false, fmt.Errorf("read opt-out: %w", err)
	}
	return anyValue(vals), nil
}

// indexScript: KEYS[1] phone index; ARGV score, booking id, TTL in ms. The
// index lives as long as its longest-lived booking.
var indexScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`)

// IndexPhone notes that booking id, made at at, texts phone, until
// expireAt.
func (s *Store) IndexPhone(ctx context.Context, phone, id string, at, expireAt time.Time) error {
	ttl := max(time.Until(expireAt).Milliseconds(), 1)
	if err := indexScript.Run(ctx, s.rdb, []string{s.phoneKey(phone)}, at.UnixMilli(), id, ttl).Err(); err != nil {
		return fmt.Errorf("index phone: %w", err)
	}
	return nil
}

// Bookings returns the ids of the bookings that text phone, newest first,
// from the index under each of the number's names.
func (s *Store) Bookings(ctx context.Context, phone string) ([]string, error) {
	names := s.names.names(phone)
	cmds := make([]*redis.ZSliceCmd, len(names))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.ZRevRangeWithScores(ctx, phoneKeyNamed(n), 0, -1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bookings of a phone: %w", err)
	}
	var all []redis.Z
	seen := map[string]bool{}
	for _, c := range cmds {
		for _, z := range c.Val() {
			if id := z.Member.(string); !seen[id] {
				seen[id] = true
				all = append(all, z)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b redis.Z) int { return cmp.Compare(b.Score, a.Score) })
	ids := make([]string, len(all))
	for i, z := range all {
		ids[i] = z.Member.(string)
	}
	return ids, nil
}

// receiptTTL is how long a provider id stays linked to its message and a
// delivery receipt is remembered: longer than any carrier retries.
const receiptTTL = 7 * 24 * time.Hour

// sidKey links a provider's message id (a Twilio SID) to its message.
func sidKey(providerID string) string { return "aftercare:sid:" + providerID }

// ByProvider returns the message a provider id belongs to, or ENOTFOUND.
func (s *Store) ByProvider(ctx context.Context, providerID string) (aftercare.MessageRef, error) {
	data, err := s.rdb.Get(ctx, sidKey(providerID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return aftercare.MessageRef{}, aftercare.Errorf(aftercare.ENOTFOUND, "no message with provider id %q", providerID)
	}
	if err != nil {
		return aftercare.MessageRef{}, fmt.Errorf("find provider id: %w", err)
	}
	return aftercare.ParseMessageRef(data)
}

// FirstReceipt reports whether the receipt named key is seen for the first
// time, remembering it; providers send the same callback more than once.
func (s *Store) FirstReceipt(ctx context.Context, key string) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, receiptKey(key), 1, receiptTTL).Result()
	if err != nil {
		return false, fmt.Errorf("remember receipt: %w", err)
	}
	return ok, nil
}

// ForgetReceipt forgets the receipt named key, so that the provider's next
// try of it is applied.
func (s *Store) ForgetReceipt(ctx context.Context, key string) error {
	if err := s.rdb.Del(ctx, receiptKey(key)).Err(); err != nil {
		return fmt.Errorf("forget receipt: %w", err)
	}
	return nil
}

func receiptKey(key string) string { return "aftercare:receipt:" + key }

// keptTTL is how long a receipt waits for its message to be recorded sent.
const keptTTL = 24 * time.Hour

func keptKey(providerID string) string { return "aftercare:receipt:kept:{" + providerID + "}" }

// KeepReceipt keeps r until its message is recorded sent (see Transition),
// for a day at most.
func (s *Store) KeepReceipt(ctx context.Context, r aftercare.Receipt) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, keptKey(r.ProviderID), data)
		p.Expire(ctx, keptKey(r.ProviderID), keptTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("keep receipt: %w", err)
	}
	return nil
}

// DropEarlyReceipts drops the first n receipts kept for providerID, once
// they are applied; any that came after them stay.
func (s *Store) DropEarlyReceipts(ctx context.Context, providerID string, n int) error {
	if err := s.rdb.LTrim(ctx, keptKey(providerID), int64(n), -1).Err(); err != nil {
		return fmt.Errorf("drop early receipts: %w", err)
	}
	return nil
}

// decodeReceipts reads receipts as KeepReceipt keeps them.
func decodeReceipts(vals []string) ([]aftercare.Receipt, error) {
	var out []aftercare.Receipt
	for _, v := range vals {
		var r aftercare.Receipt
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("early receipt: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
