package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ensureGroups creates the consumer group on every stream that lacks it. An existing group is
// left exactly where it is: the reference consumer's XGROUP SETID … $ at start is what makes it
// skip everything written while it was down, so the bridge never moves a group.
func (c *Consumer) ensureGroups(ctx context.Context, vanished bool) error {
	for _, s := range c.cfg.Streams {
		pos, created, err := c.createGroup(ctx, s)
		if err != nil {
			return fmt.Errorf("stream %s: %w", s, err)
		}
		if !created {
			continue
		}
		if vanished {
			// The bus Redis restarted without its data, or someone destroyed the group.
			c.log.Warn("consumer group was missing and has been recreated; entries written before it was recreated may not be processed (run bridge backfill if in doubt)",
				"stream", s, "start", c.cfg.Start, "position", pos)
		} else {
			c.log.Info("consumer group created", "stream", s, "start", c.cfg.Start, "position", pos)
		}
	}
	return nil
}

// createGroup runs XGROUP CREATE for one stream and reports the position used and whether the
// group was created (false: it existed).
//
// On Redis 7 the group is created with ENTRIESREAD, so its read counter is valid from the
// start. The counter is what countTrimmed measures trimmed entries with; Redis leaves it unset
// for a plain XGROUP CREATE and then guesses it at the first read, which hides entries trimmed
// before that read. The position is still "$" or "0" in meaning: for "newest" the stream's
// last id with the number of entries ever added, for "oldest" 0 with the number of entries
// already trimmed away (they were gone before the group existed, so they were not missed). A
// stream that does not exist yet is created empty with the group at 0, which is both newest
// and oldest, and also takes entries a producer adds in between.
func (c *Consumer) createGroup(ctx context.Context, stream string) (pos string, created bool, err error) {
	info, err := c.streamInfo(ctx, stream)
	var args, fallback []any
	switch {
	case isNoSuchKey(err):
		pos = "0"
		args = []any{"XGROUP", "CREATE", stream, c.cfg.Group, pos, "MKSTREAM", "ENTRIESREAD", 0}
		fallback = args[:6] // Redis 6.2 knows no ENTRIESREAD
	case err != nil:
		return "", false, fmt.Errorf("XINFO STREAM: %w", err)
	case info.hasEntriesAdded && c.cfg.Start == StartOldest:
		pos = "0"
		args = []any{"XGROUP", "CREATE", stream, c.cfg.Group, pos, "ENTRIESREAD", max(info.entriesAdded-info.length, 0)}
	case info.hasEntriesAdded:
		pos = info.lastGeneratedID
		args = []any{"XGROUP", "CREATE", stream, c.cfg.Group, pos, "ENTRIESREAD", info.entriesAdded}
	default: // Redis 6.2: no read counters
		pos = "$"
		if c.cfg.Start == StartOldest {
			pos = "0"
		}
		args = []any{"XGROUP", "CREATE", stream, c.cfg.Group, pos, "MKSTREAM"}
	}
	err = c.bus.Do(ctx, args...).Err()
	if fallback != nil && err != nil && !isBusyGroup(err) && isServerError(err) {
		err = c.bus.Do(ctx, fallback...).Err()
	}
	switch {
	case isBusyGroup(err):
		return pos, false, nil
	case err != nil:
		return "", false, fmt.Errorf("XGROUP CREATE: %w", err)
	}
	return pos, true, nil
}

// isServerError tells a reply of the Redis server from a network or client failure.
func isServerError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

func isBusyGroup(err error) bool { return hasErrorPrefix(err, "BUSYGROUP") }

// isNoGroup is the error of XREADGROUP, XAUTOCLAIM and friends when the stream or the group
// does not exist.
func isNoGroup(err error) bool { return hasErrorPrefix(err, "NOGROUP") }

// isNoSuchKey is the error of XINFO for a stream that does not exist.
func isNoSuchKey(err error) bool {
	return isServerError(err) && strings.Contains(strings.ToLower(err.Error()), "no such key")
}

func hasErrorPrefix(err error, prefix string) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), prefix)
}

// entryID is a stream entry id, ordered as Redis orders them.
type entryID struct{ ms, seq uint64 }

func parseEntryID(s string) (entryID, bool) {
	ms, seq, found := strings.Cut(s, "-")
	a, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return entryID{}, false
	}
	var b uint64
	if found {
		if b, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return entryID{}, false
		}
	}
	return entryID{a, b}, true
}

func (a entryID) less(b entryID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a entryID) isZero() bool { return a == entryID{} }
