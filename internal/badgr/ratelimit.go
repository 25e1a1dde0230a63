package badgr

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// All shared deadlines (pause, login block, rate-limit schedule) are kept in the Redis server's
// clock (TIME), never a replica's, so replicas with skewed clocks still agree. Deadlines are
// stored as values and compared inside scripts; key TTLs only clean up, so correctness does not
// depend on expiry timing.

// gateScript decides whether a request to the host may go now.
//
//	KEYS[1] login_blocked_until (ms), KEYS[2] pause (ms), KEYS[3] rate-limit schedule (µs)
//	ARGV[1] emission interval in µs (0 = no rate limit)
//	ARGV[2] longest acceptable wait in µs (-1 = unbounded)
//
// Returns {code, value}: {0, wait µs} a slot is reserved, go after waiting; {1, until ms} login
// blocked; {2, remaining µs} shared pause, ask again afterwards; {3, wait µs} the next slot is
// further away than ARGV[2] (nothing reserved).
//
// The rate limit is GCRA with no burst: the schedule key holds the theoretical arrival time of
// the next request, and each request reserves one emission interval. Reserving (rather than
// "try again later") serves waiters in order and keeps N replicas together at the configured
// rate without polling.
var gateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if blocked * 1000 > now then
  return {1, blocked}
end
local pause = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if pause * 1000 > now then
  return {2, pause * 1000 - now}
end
local interval = tonumber(ARGV[1])
if interval <= 0 then
  return {0, 0}
end
local tat = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if tat < now then
  tat = now
end
local wait = tat - now
local maxwait = tonumber(ARGV[2])
if maxwait >= 0 and wait > maxwait then
  return {3, wait}
end
local nexttat = tat + interval
redis.call('SET', KEYS[3], string.format('%.0f', nexttat), 'PX', math.ceil((nexttat - now) / 1000) + 1000)
return {0, wait}
`)

// extendDeadlineScript moves a shared deadline to now+ARGV[1] ms unless it is already later.
//
//	KEYS[1] the deadline key (ms); KEYS[2] optional companion key set to ARGV[2] when extended
//
// Returns the deadline in ms and whether this call extended it.
var extendDeadlineScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local untilms = now + ms
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur >= untilms then
  return {cur, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', untilms), 'PX', ms + 60000)
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ms + 60000)
end
return {untilms, 1}
`)

// activeDeadlineScript returns the deadline in ms stored at KEYS[1] when it is still ahead of the
// server clock, else 0.
var activeDeadlineScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v > now then
  return v
end
return 0
`)

const (
	gateGo      = 0
	gateBlocked = 1
	gatePaused  = 2
	gateTooLate = 3
)

// wait blocks until a request for op may be sent: not while login is blocked (fails fast), not
// during the shared pause, and no faster than the shared rate limit. Waiting is not an error;
// when the wait would outlast ctx's deadline it returns a 429 HostError at once (nothing is sent)
// so the caller can reschedule instead of failing on a deadline.
func (c *Client) wait(ctx context.Context, op string) error {
	for {
		maxWait := int64(-1)
		if dl, ok := ctx.Deadline(); ok {
			maxWait = max(0, time.Until(dl).Microseconds())
		}
		res, err := gateScript.Run(ctx, c.rdb,
			[]string{c.keys.blocked, c.keys.pause, c.keys.rate},
			c.intervalMicros, maxWait).Int64Slice()
		if err != nil {
			return fmt.Errorf("badgr %s: rate limiter: %w", op, err)
		}
		if len(res) != 2 {
			return fmt.Errorf("badgr %s: rate limiter: unexpected script answer %v", op, res)
		}
		code, v := res[0], res[1]
		switch code {
		case gateBlocked:
			return c.blockedError(ctx, time.UnixMilli(v))
		case gatePaused:
			d := time.Duration(v) * time.Microsecond
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
				return &HostError{Op: op, Status: 429, RetryAfter: d,
					Message: "too many requests: the host asked every replica to pause"}
			}
			c.log.Debug("badgr: waiting for the shared pause", "op", op, "wait", d.String())
			if err := sleep(ctx, d); err != nil {
				return fmt.Errorf("badgr %s: waiting for the shared pause: %w", op, err)
			}
			// Ask again: the pause may have been extended, and a rate-limit slot is still needed.
		case gateTooLate:
			d := time.Duration(v) * time.Microsecond
			return &HostError{Op: op, Status: 429, RetryAfter: d,
				Message: "too many requests: the shared rate limit has no slot before the deadline"}
		case gateGo:
			if v <= 0 {
				return nil
			}
			if err := sleep(ctx, time.Duration(v)*time.Microsecond); err != nil {
				return fmt.Errorf("badgr %s: waiting for the rate limit: %w", op, err)
			}
			return nil
		default:
			return fmt.Errorf("badgr %s: rate limiter: unexpected script answer %v", op, res)
		}
	}
}

// pause stores the shared pause so every replica holds back for d after a 429.
func (c *Client) pause(ctx context.Context, d time.Duration) {
	// Stored even when the caller's context is nearly spent: the other replicas need it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ms := max(d.Milliseconds(), 1)
	if _, err := extendDeadlineScript.Run(ctx, c.rdb, []string{c.keys.pause}, ms).Result(); err != nil {
		// Losing the pause only means other replicas may hit one more 429 each.
		c.log.Warn("badgr: could not store the shared pause", "err", err)
	}
}

// blockLogin stores the shared login block and returns the error every caller sees. Exactly one
// error line is logged per block period across replicas: the period's deadline names a SET NX key.
func (c *Client) blockLogin(ctx context.Context, d time.Duration, reason string) error {
	// The caller's context may be nearly spent; recording the block matters more than its deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ms := max(d.Milliseconds(), 1)
	res, err := extendDeadlineScript.Run(sctx, c.rdb, []string{c.keys.blocked, c.keys.blockedReason}, ms, reason).Int64Slice()
	if err != nil || len(res) != 2 {
		c.log.Error("badgr: badge host login failed; could not store the shared login block", "reason", reason, "err", err)
		return &LoginBlockedError{Until: time.Now().Add(d), Reason: reason}
	}
	until := time.UnixMilli(res[0])
	first, err := c.rdb.SetNX(sctx, c.keys.blockedLogged+strconv.FormatInt(res[0], 10), 1, d+time.Minute).Result()
	if err != nil || first {
		c.log.Error("badgr: badge host login failed; no calls to the host until the block ends",
			"until", until.UTC(), "reason", reason)
	}
	return &LoginBlockedError{Until: until, Reason: reason}
}

// blockedError builds the error for a block another call (maybe another replica) stored.
func (c *Client) blockedError(ctx context.Context, until time.Time) error {
	reason, err := c.rdb.Get(ctx, c.keys.blockedReason).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		reason = ""
	}
	return &LoginBlockedError{Until: until, Reason: reason}
}

// LoginBlockedUntil returns when the shared login block ends, or the zero time when logins are
// not blocked. It never calls the host (for readiness probes and the status page).
func (c *Client) LoginBlockedUntil(ctx context.Context) (time.Time, error) {
	ms, err := activeDeadlineScript.Run(ctx, c.rdb, []string{c.keys.blocked}).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("badgr: read login block: %w", err)
	}
	if ms == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms), nil
}

// intervalMicros converts a rate in requests per second to the GCRA emission interval.
func intervalMicros(rate int) int64 {
	if rate <= 0 {
		return 0
	}
	return int64(math.Ceil(1e6 / float64(rate)))
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
