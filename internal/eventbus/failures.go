package eventbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/durable"
)

const (
	// maxIntakeFailures is how many times the intake may fail on one entry the same way before
	// the entry is dead-lettered, so one entry the intake cannot take does not hold up its
	// stream forever.
	maxIntakeFailures = 5
	// failuresTTL lets the failure counts of entries no consumer finished (a replica that died
	// and an entry trimmed before anyone claimed it) expire; every failure refreshes it.
	failuresTTL = 24 * time.Hour
	// pingTimeout bounds the check that tells an unreachable queue Redis from a rejection.
	pingTimeout = 2 * time.Second
	// maxPanicStack bounds the stack a recovered panic logs.
	maxPanicStack = 8 << 10
)

// Failure counts live in the bridge's Redis, one small hash per group and stream, field = entry
// id, value = "<count>:<fingerprint of the error>", rather than in the stream's pending list:
// its delivery counter also grows with every re-read during an outage, which must never count,
// and a count in Redis survives a restart and follows an entry claimed by another replica. The
// field is removed when the entry is finished; the hash holds at most the few entries at the
// head of each stream that keep failing.
//
// The script counts consecutive failures with the same fingerprint: a different error starts
// the count again.
const countFailureLua = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
local n = 1
if v then
  local c, f = string.match(v, '^(%d+):(.*)$')
  if c and f == ARGV[2] then n = tonumber(c) + 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], n .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return n
`

func (c *Consumer) failuresKey(stream string) string {
	return "bb:eventbus:failures:" + c.cfg.Group + ":" + stream
}

// countFailure records one intake failure of entry id and returns how many times in a row it
// failed this way.
func (c *Consumer) countFailure(ctx context.Context, stream, id string, cause error) (int, error) {
	fp := sha256Hex(cause.Error())[:16]
	n, err := c.failScript.Run(ctx, c.own, []string{c.failuresKey(stream)},
		id, fp, failuresTTL.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("count failure of entry %s: %w", id, err)
	}
	return n, nil
}

// forgetFailures drops the failure count of a finished entry. Best effort: a leftover count
// expires with the hash.
func (c *Consumer) forgetFailures(ctx context.Context, stream, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := c.own.HDel(ctx, c.failuresKey(stream), id).Err(); err != nil {
		c.log.Debug("could not drop the failure count of a finished entry; it expires", "stream", stream, "entry_id", id, "err", err)
	}
}

// queueDown reports whether an intake failure comes from the bridge's Redis being unreachable
// or unusable, rather than from the intake rejecting the entry. Such failures never count
// towards dead-lettering: the entry waits however long the outage lasts. When the error alone
// does not tell, a PING of the bridge's Redis does.
func (c *Consumer) queueDown(ctx context.Context, err error) bool {
	if isUnavailable(err) {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return c.own.Ping(pctx).Err() != nil
}

// isUnavailable recognises errors of a Redis that cannot be reached or cannot serve right now.
// A write the Redis did not confirm durable (too few replicas, no fsync) is one: it says nothing
// about the entry, and the entry must wait for the replicas however long that takes.
func isUnavailable(err error) bool {
	var ne net.Error
	if errors.Is(err, durable.ErrNotConfirmed) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	// A full Redis (noeviction), a replica, a failover, a loading or busy server, a wrong
	// password or ACL: all resolve on the Redis side, none says anything about the entry.
	code, _, _ := strings.Cut(strings.TrimPrefix(rerr.Error(), "ERR "), " ")
	switch code {
	case "OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
		"MISCONF", "NOAUTH", "WRONGPASS", "NOPERM":
		return true
	}
	return redis.IsMaxClientsError(err)
}

// panicError is a panic recovered while decoding or handling one entry.
type panicError struct {
	during string // "decoding" or "handling"
	value  string // redacted and bounded
	stack  string
}

func (e *panicError) Error() string { return "panic while " + e.during + " the entry: " + e.value }

// recovered turns a recovered panic value into a *panicError. The value may quote event data,
// so it is bounded and e-mail addresses in it are masked; the stack holds code locations only.
func recovered(during string, v any) *panicError {
	stack := debug.Stack()
	return &panicError{
		during: during,
		value:  maskEmails(truncate(fmt.Sprint(v), deadFieldMax)),
		stack:  string(stack[:min(len(stack), maxPanicStack)]),
	}
}

// maskEmails replaces every word containing "@" with a placeholder.
func maskEmails(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	words := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '"' || r == '\'' || r == ',' })
	for _, w := range words {
		if strings.Contains(w, "@") {
			s = strings.ReplaceAll(s, w, "<redacted "+strconv.Itoa(len(w))+" bytes>")
		}
	}
	return s
}
