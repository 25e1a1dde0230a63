package eventbus

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The XINFO replies are read raw rather than with go-redis's typed commands, which turn a
// missing (Redis 6.2) or null (unknown) entries-read or lag into 0 and so hide exactly the
// cases that matter here.

// streamInfo is the part of XINFO STREAM the consumer uses.
type streamInfo struct {
	length          int64
	lastGeneratedID string
	firstEntryID    string // "" when the stream is empty
	entriesAdded    int64
	hasEntriesAdded bool // Redis ≥ 7
}

// groupInfo is one consumer group of XINFO GROUPS.
type groupInfo struct {
	name            string
	consumers       int64
	pending         int64
	lastDeliveredID string
	entriesRead     *int64 // nil: unknown to Redis, or Redis 6.2
	lag             *int64 // nil: unknown to Redis, or Redis 6.2
}

func (c *Consumer) streamInfo(ctx context.Context, stream string) (streamInfo, error) {
	v, err := c.bus.Do(ctx, "XINFO", "STREAM", stream).Result()
	if err != nil {
		return streamInfo{}, err
	}
	return parseStreamInfo(v)
}

// snapshot reads XINFO STREAM and this consumer's group from XINFO GROUPS in one MULTI, so the
// counters of the two agree. group is nil when the stream exists without the group.
func (c *Consumer) snapshot(ctx context.Context, stream string) (streamInfo, *groupInfo, error) {
	var sc, gc *redis.Cmd
	_, err := c.bus.TxPipelined(ctx, func(p redis.Pipeliner) error {
		sc = p.Do(ctx, "XINFO", "STREAM", stream)
		gc = p.Do(ctx, "XINFO", "GROUPS", stream)
		return nil
	})
	if err != nil {
		return streamInfo{}, nil, err
	}
	si, err := parseStreamInfo(sc.Val())
	if err != nil {
		return streamInfo{}, nil, err
	}
	groups, ok := gc.Val().([]any)
	if !ok {
		return streamInfo{}, nil, fmt.Errorf("XINFO GROUPS: unexpected reply %T", gc.Val())
	}
	for _, g := range groups {
		gi, err := parseGroupInfo(g)
		if err != nil {
			return streamInfo{}, nil, err
		}
		if gi.name == c.cfg.Group {
			return si, &gi, nil
		}
	}
	return si, nil, nil
}

func parseStreamInfo(v any) (streamInfo, error) {
	m, err := replyMap(v)
	if err != nil {
		return streamInfo{}, fmt.Errorf("XINFO STREAM: %w", err)
	}
	var si streamInfo
	si.length, _ = m["length"].(int64)
	si.lastGeneratedID, _ = m["last-generated-id"].(string)
	if n, ok := m["entries-added"].(int64); ok {
		si.entriesAdded, si.hasEntriesAdded = n, true
	}
	// first-entry is [id, [field, value, …]], or null for an empty stream.
	if e, ok := m["first-entry"].([]any); ok && len(e) > 0 {
		si.firstEntryID, _ = e[0].(string)
	}
	return si, nil
}

func parseGroupInfo(v any) (groupInfo, error) {
	m, err := replyMap(v)
	if err != nil {
		return groupInfo{}, fmt.Errorf("XINFO GROUPS: %w", err)
	}
	var gi groupInfo
	gi.name, _ = m["name"].(string)
	gi.consumers, _ = m["consumers"].(int64)
	gi.pending, _ = m["pending"].(int64)
	gi.lastDeliveredID, _ = m["last-delivered-id"].(string)
	if n, ok := m["entries-read"].(int64); ok {
		gi.entriesRead = &n
	}
	if n, ok := m["lag"].(int64); ok {
		gi.lag = &n
	}
	return gi, nil
}

// replyMap reads a field/value reply in either protocol: a RESP3 map, or the RESP2 flat list.
func replyMap(v any) (map[string]any, error) {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, val := range t {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key of type %T in reply", k)
			}
			m[ks] = val
		}
		return m, nil
	case map[string]any:
		return t, nil
	case []any:
		if len(t)%2 != 0 {
			return nil, fmt.Errorf("odd number of elements (%d) in reply", len(t))
		}
		m := make(map[string]any, len(t)/2)
		for i := 0; i < len(t); i += 2 {
			ks, ok := t[i].(string)
			if !ok {
				return nil, fmt.Errorf("key of type %T in reply", t[i])
			}
			m[ks] = t[i+1]
		}
		return m, nil
	}
	return nil, fmt.Errorf("unexpected reply %T", v)
}
