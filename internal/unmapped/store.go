package unmapped

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// StoreCap is how many course keys the shared list keeps.
const StoreCap = 500

// Store is the list of the most ignored course keys, shared by every replica, in the bridge's
// own Redis.
//
// Why Redis and not per process: webhooks are spread over the web replicas and event-bus entries
// over the workers, so one replica's list would show a different, partial picture on every call
// of GET /v1/status. Shared, it costs two keys of bounded size (a sorted set of at most StoreCap
// members and a hash beside it: about 100 KB at the cap with 40-character keys, measured) and one round trip per replica every
// FlushEvery, not one per event: each process adds up its counts in memory first.
//
// Bounded by the Space-Saving algorithm (Metwally et al., 2005): when the list is full, a new
// course key takes the place of the least counted one and inherits its count as a possible
// overcount (Course.CountError). So a course key with more ignored events than 1/StoreCap of
// all of them is always listed, and the counts are exact until the list first fills.
//
// Both keys carry one hash tag, so the script stays in one slot of a Redis Cluster. They do not
// expire; deleting them resets the list.
type Store struct {
	rdb        redis.UniversalClient
	zset, meta string
	cap        int
}

// NewStore keeps the list under prefix (the ledger's, "bb:").
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, zset: prefix + "{unmapped}:courses", meta: prefix + "{unmapped}:courses:meta", cap: StoreCap}
}

// Count is what a process adds for one course key: N events, the latest at LastSeen.
type Count struct {
	Course   string
	N        int64
	LastSeen time.Time
}

// Course is one entry of the shared list.
type Course struct {
	Course string `json:"course"`
	// Count is the events ignored for it since it entered the list; when the list was full then,
	// it includes CountError events inherited from the key it replaced (the true count is between
	// Count-CountError and Count).
	Count      int64     `json:"count"`
	CountError int64     `json:"count_error,omitempty"`
	LastSeen   time.Time `json:"last_seen"`
}

// addScript adds counts (ARGV: cap, then course, n, last seen µs per course). The hash holds,
// per member, "<last seen µs> <count error>".
var addScript = redis.NewScript(`
local cap = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local course, n, seen = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  local err = 0
  if redis.call('ZSCORE', KEYS[1], course) then
    local meta = redis.call('HGET', KEYS[2], course)
    if meta then
      local s, e = string.match(meta, '^(%d+) (%d+)$')
      if s and tonumber(s) > seen then seen = tonumber(s) end
      err = tonumber(e) or 0
    end
    redis.call('ZINCRBY', KEYS[1], n, course)
  else
    while redis.call('ZCARD', KEYS[1]) >= cap do
      local min = redis.call('ZPOPMIN', KEYS[1])
      redis.call('HDEL', KEYS[2], min[1])
      if tonumber(min[2]) > err then err = tonumber(min[2]) end
    end
    redis.call('ZADD', KEYS[1], n + err, course)
  end
  redis.call('HSET', KEYS[2], course, string.format('%.0f %.0f', seen, err))
end
return 1`)

// Add adds the counts of one process, atomically.
func (s *Store) Add(ctx context.Context, counts []Count) error {
	if len(counts) == 0 {
		return nil
	}
	args := make([]any, 0, 1+3*len(counts))
	args = append(args, s.cap)
	for _, c := range counts {
		args = append(args, c.Course, c.N, c.LastSeen.UnixMicro())
	}
	if err := addScript.Run(ctx, s.rdb, []string{s.zset, s.meta}, args...).Err(); err != nil {
		return fmt.Errorf("record ignored course keys: %w", err)
	}
	return nil
}

// Top gives the n most ignored course keys, most first, and how many the list holds.
func (s *Store) Top(ctx context.Context, n int) ([]Course, int64, error) {
	var zs *redis.ZSliceCmd
	var card *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		zs = p.ZRevRangeWithScores(ctx, s.zset, 0, int64(n-1))
		card = p.ZCard(ctx, s.zset)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read ignored course keys: %w", err)
	}
	out := make([]Course, 0, len(zs.Val()))
	names := make([]string, 0, len(zs.Val()))
	for _, z := range zs.Val() {
		name, _ := z.Member.(string)
		names = append(names, name)
		out = append(out, Course{Course: name, Count: int64(z.Score)})
	}
	if len(names) == 0 {
		return out, card.Val(), nil
	}
	metas, err := s.rdb.HMGet(ctx, s.meta, names...).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("read ignored course keys: %w", err)
	}
	for i, m := range metas {
		str, _ := m.(string)
		seen, e, _ := strings.Cut(str, " ")
		if us, err := strconv.ParseInt(seen, 10, 64); err == nil && us > 0 {
			out[i].LastSeen = time.UnixMicro(us).UTC()
		}
		out[i].CountError, _ = strconv.ParseInt(e, 10, 64)
	}
	return out, card.Val(), nil
}
