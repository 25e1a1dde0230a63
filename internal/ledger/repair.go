package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The row and failed indexes are written with the steps that change a row, but rows from
// versions before the indexes are in neither. A background repair walks both sides a batch at a
// time: every row is put in the indexes its state says, and index entries whose row is gone are
// dropped.

// repairRowsScript sets the index entries of each row named in ARGV from its state.
// KEYS: row index, failed index. ARGV: row key prefix, then row members.
var repairRowsScript = redis.NewScript(`
local fixed = 0
for i = 2, #ARGV do
  local state = redis.call('HGET', ARGV[1] .. ARGV[i], 'state')
  if state then
    fixed = fixed + redis.call('ZADD', KEYS[1], 0, ARGV[i])
    if state == 'failed' then
      fixed = fixed + redis.call('ZADD', KEYS[2], 0, ARGV[i])
    else
      fixed = fixed + redis.call('ZREM', KEYS[2], ARGV[i])
    end
  else
    fixed = fixed + redis.call('ZREM', KEYS[1], ARGV[i]) + redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
return fixed`)

// RepairCursor is where the index repair goes on from; the zero value starts a new pass.
type RepairCursor struct {
	scan    uint64 // SCAN cursor over row keys
	index   string // last index member checked
	failed  string // last failed-index member checked
	scanned bool   // the scan of this pass is complete
}

// RepairIndexes checks up to batch rows from each side and returns the cursor for the next call
// and how many index entries it changed. done is true when a whole pass ended with this call;
// the legacy unordered row set is dropped then, its rows having been indexed by the scan.
//
// The Cluster layout has nothing to repair: it writes a row and its index entries in one
// transaction or script (they share the learner's bucket), and it has no rows from before the
// indexes.
func (l *Ledger) RepairIndexes(ctx context.Context, c RepairCursor, batch int) (next RepairCursor, fixed int, done bool, err error) {
	if l.Sharded() {
		return RepairCursor{}, 0, true, nil
	}
	var keys []string
	scan := uint64(0)
	if !c.scanned {
		keys, scan, err = l.rdb.Scan(ctx, c.scan, l.opts.Prefix+"row:*", int64(batch)).Result()
		if err != nil {
			return c, 0, false, fmt.Errorf("repair indexes: %w", err)
		}
	}
	members := make([]string, 0, len(keys))
	for _, k := range keys {
		members = append(members, strings.TrimPrefix(k, l.opts.Prefix+"row:"))
	}
	n, err := l.repairMembers(ctx, members)
	if err != nil {
		return c, 0, false, err
	}
	fixed += n
	next = RepairCursor{scan: scan, scanned: scan == 0}
	indexDone := true
	for _, side := range []struct {
		key  string
		from string
		to   *string
	}{{l.rowIndexKey(""), c.index, &next.index}, {l.failedIndexKey(""), c.failed, &next.failed}} {
		start := "-"
		if side.from != "" {
			start = "(" + side.from
		}
		ms, err := l.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: side.key, Start: start, Stop: "+", ByLex: true, Count: int64(batch)}).Result()
		if err != nil {
			return c, fixed, false, fmt.Errorf("repair indexes: %w", err)
		}
		n, err := l.repairMembers(ctx, ms)
		if err != nil {
			return c, fixed, false, err
		}
		fixed += n
		*side.to = side.from
		if len(ms) > 0 {
			*side.to = ms[len(ms)-1]
		}
		if len(ms) == batch {
			indexDone = false
		}
	}
	if scan == 0 && indexDone {
		if err := l.rdb.Del(ctx, l.legacyRowsKey()).Err(); err != nil {
			return c, fixed, false, fmt.Errorf("repair indexes: %w", err)
		}
		return RepairCursor{}, fixed, true, nil
	}
	return next, fixed, false, nil
}

func (l *Ledger) repairMembers(ctx context.Context, members []string) (int, error) {
	if len(members) == 0 {
		return 0, nil
	}
	args := make([]any, 0, len(members)+1)
	args = append(args, l.opts.Prefix+"row:")
	for _, m := range members {
		args = append(args, m)
	}
	n, err := repairRowsScript.Run(ctx, l.rdb, []string{l.rowIndexKey(""), l.failedIndexKey("")}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("repair indexes: %w", err)
	}
	return n, nil
}
