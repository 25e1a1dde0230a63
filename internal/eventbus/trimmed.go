package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// missedKeyTTL keeps the trimmed-entry bookkeeping of a stream that is no longer configured
// from staying forever; every check refreshes it.
const missedKeyTTL = 30 * 24 * time.Hour

// countTrimmed counts, and logs once, the entries the producer trimmed from stream (it keeps
// ~10,000: MAXLEN ~) before the group read them. They never reach the bridge; `bridge
// backfill` is the recovery.
//
// The method, on Redis ≥ 7 (6.2 has no counters and is skipped). Redis counts entries-added
// per stream and, per group, entries-read: one per entry delivered to the group, so a group
// that jumps over trimmed entries does not count them. For the group's last-delivered id L:
//
//	missed = entries-added − (entries after L) − entries-read
//
// is the number of entries that left the stream without being delivered to the group, over
// the group's whole life. "Entries after L" is known in two cases: the whole stream when L is
// older than its first entry (the group has fallen behind the trimming), none when L is the
// last id (caught up); in between the check waits for a later pass. missed only grows, so
// what is new is the difference to the last value, which is kept in the bridge's Redis:
// replicas and restarts therefore report a loss once. Nothing else removes entries (the
// producer never XDELs); if something does, its removals count as missed too.
//
// Redis leaves entries-read unset (null) for a group created without ENTRIESREAD and sets it
// by estimate at the group's first read, an estimate that takes trimmed entries as read. The
// bridge creates its groups with the counter set (createGroup). For a group created
// elsewhere: never read (L = 0-0) means 0 read; otherwise the loss cannot be counted and is
// only logged. Values measured while the counter was unset are kept apart from those with a
// valid counter, because the estimate restarts the count.
func (c *Consumer) countTrimmed(ctx context.Context, st *runState, stream string) error {
	si, g, err := c.snapshot(ctx, stream)
	switch {
	case err == nil:
	case isNoSuchKey(err):
		return nil // the stream is gone; the next read recreates it with the group
	case isServerError(err) && !isNoGroup(err):
		// E.g. XINFO denied by an ACL: counting is best effort, reading goes on.
		if !st.uncountable[stream] {
			st.uncountable[stream] = true
			c.log.Warn("cannot inspect the stream; entries trimmed before the group read them are not counted", "stream", stream, "err", err)
		}
		return nil
	default:
		return fmt.Errorf("XINFO: %w", err)
	}
	if g == nil || !si.hasEntriesAdded {
		return nil
	}
	last, ok1 := parseEntryID(g.lastDeliveredID)
	lastGenerated, ok2 := parseEntryID(si.lastGeneratedID)
	if !ok1 || !ok2 {
		return nil
	}
	first, hasFirst := parseEntryID(si.firstEntryID)
	var after int64 // entries of the stream after the group's position
	behind := false
	switch {
	case !last.less(lastGenerated):
		after = 0
	case si.length == 0 || (hasFirst && last.less(first)):
		after, behind = si.length, true
	default:
		return nil
	}

	var read int64
	counter := "valid"
	switch {
	case g.entriesRead != nil:
		read = *g.entriesRead
	case last.isZero():
		read, counter = 0, "unset"
	default:
		if behind && !st.uncountable[stream] {
			st.uncountable[stream] = true
			c.log.Warn("entries may have been trimmed from the stream before the consumer group read them, but Redis does not know how many the group read; run bridge backfill if in doubt",
				"stream", stream, "last_delivered_id", g.lastDeliveredID, "first_entry_id", si.firstEntryID)
		}
		return nil
	}
	missed := max(si.entriesAdded-after-read, 0)

	prev, err := c.recordMissed(ctx, stream, counter, missed)
	if err != nil {
		if ctx.Err() == nil {
			c.ownDown.failed(c.log, err, "op", "record trimmed entries", "stream", stream)
		}
		return nil // counted at the next pass
	}
	c.ownDown.recovered(c.log)
	if n := missed - prev; n > 0 {
		c.metrics.trimmed(stream, int(n))
		c.log.Warn("entries were trimmed from the stream before the consumer group read them; they are lost to the bridge: run bridge backfill",
			"stream", stream, "count", n, "total_missed", missed)
	}
	return nil
}

// recordMissed stores the missed count of stream and returns the one stored before it, 0 when
// there was none or it was measured with the other kind of counter. A stored value above
// missed means the group's counter was reset (the group was recreated): nothing is new then,
// and the new value is the base from now on.
func (c *Consumer) recordMissed(ctx context.Context, stream, counter string, missed int64) (int64, error) {
	key := "bb:eventbus:missed:" + c.cfg.Group + ":" + stream
	old, err := c.own.SetArgs(ctx, key, counter+":"+strconv.FormatInt(missed, 10),
		redis.SetArgs{Get: true, TTL: missedKeyTTL}).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("SET %s: %w", key, err)
	}
	kind, num, _ := strings.Cut(old, ":")
	n, err := strconv.ParseInt(num, 10, 64)
	if kind != counter || err != nil {
		return 0, nil
	}
	return min(n, missed), nil
}
