package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// Limiter spaces sends out to a rate shared by every worker process: a
// token bucket kept in Redis and driven by Redis's clock, so the processes'
// clocks need not agree. It is a dozen lines of Lua rather than a library:
// the one operation needed, "take a slot and tell me how long to wait", is
// one atomic script, and the state is two numbers per sender.
//
// A caller that would wait longer than MaxWait is told it is rate limited
// instead (the task goes back to asynq without counting as a failure), so a
// backlog does not pin every worker in a sleep.
type Limiter struct {
	rdb     redis.UniversalClient
	rates   map[aftercare.Channel]float64
	MaxWait time.Duration
}

// NewLimiter limits each channel to its rate in messages per second; a
// channel without a rate, or with 0, is not limited.
func NewLimiter(rdb redis.UniversalClient, rates map[aftercare.Channel]float64) *Limiter {
	return &Limiter{rdb: rdb, rates: rates, MaxWait: 5 * time.Second}
}

// takeScript: KEYS[1] bucket; ARGV rate per second, most wait in ms. The
// bucket holds at most one token (no bursts). A slot is reserved even when
// it is in the future, so waiting callers are served in turn; one that
// would wait too long reserves nothing and gets the wait back negated.
var takeScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or 1
local ts = tonumber(b[2]) or now
tokens = math.min(1, tokens + (now - ts) * rate / 1000) - 1
local wait = 0
if tokens < 0 then wait = math.ceil(-tokens * 1000 / rate) end
if wait > tonumber(ARGV[2]) then return -wait end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], wait + math.ceil(1000 / rate) + 1000)
return wait
`)

// Reserve takes the next slot for a message on ch and returns how long
// until it comes; the caller waits that long before sending. It returns a
// SendError of class ErrRateLimited, and reserves nothing, if the slot is
// more than MaxWait away.
func (l *Limiter) Reserve(ctx context.Context, ch aftercare.Channel) (time.Duration, error) {
	rate := l.rates[ch]
	if rate <= 0 {
		return 0, nil
	}
	ms, err := takeScript.Run(ctx, l.rdb, []string{"aftercare:rate:{" + string(ch) + "}"}, rate, l.MaxWait.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	if ms < 0 {
		return 0, &aftercare.SendError{Class: aftercare.ErrRateLimited, Code: "rate:" + string(ch),
			Err: fmt.Errorf("%s sends are %s behind the %g/s limit", ch, time.Duration(-ms)*time.Millisecond, rate)}
	}
	return time.Duration(ms) * time.Millisecond, nil
}
