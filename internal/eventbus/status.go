package eventbus

import (
	"context"
	"fmt"
)

// StreamStatus is the consumer group's state on one stream, for GET /v1/status.
type StreamStatus struct {
	Stream          string `json:"stream"`
	Group           string `json:"group"`
	Length          int64  `json:"length"`            // entries the stream holds
	Pending         int64  `json:"pending"`           // delivered to a consumer of the group, not acknowledged
	Lag             int64  `json:"lag"`               // entries not yet delivered to the group; -1 when unknown
	LastDeliveredID string `json:"last_delivered_id"` // "" when the group does not exist (yet)
	Consumers       int64  `json:"consumers"`
	Dead            int64  `json:"dead"` // length of <stream>.dead in the bridge's Redis
}

// Status reports every configured stream. A stream or group that does not exist yet shows
// zeros and Lag -1.
//
// Lag is exact in the two cases that matter most: 0 when the group has read the last entry,
// the stream's length when the group is behind its first entry. In between it is Redis's
// figure (Redis ≥ 7), which, after the group has jumped over trimmed entries, still counts
// them (see countTrimmed), or -1 on Redis 6.2.
func (c *Consumer) Status(ctx context.Context) ([]StreamStatus, error) {
	out := make([]StreamStatus, 0, len(c.cfg.Streams))
	for _, s := range c.cfg.Streams {
		st := StreamStatus{Stream: s, Group: c.cfg.Group, Lag: -1}
		si, g, err := c.snapshot(ctx, s)
		switch {
		case isNoSuchKey(err):
		case err != nil:
			return nil, fmt.Errorf("event bus status of stream %s: %w", s, err)
		default:
			st.Length = si.length
			if g != nil {
				st.Pending, st.Consumers, st.LastDeliveredID = g.pending, g.consumers, g.lastDeliveredID
				st.Lag = lag(si, g)
			}
		}
		dead, err := c.own.XLen(ctx, deadStream(s)).Result()
		if err != nil {
			return nil, fmt.Errorf("length of dead-letter stream %s: %w", deadStream(s), err)
		}
		st.Dead = dead
		out = append(out, st)
	}
	return out, nil
}

func lag(si streamInfo, g *groupInfo) int64 {
	last, ok1 := parseEntryID(g.lastDeliveredID)
	lastGenerated, ok2 := parseEntryID(si.lastGeneratedID)
	first, hasFirst := parseEntryID(si.firstEntryID)
	switch {
	case ok1 && ok2 && !last.less(lastGenerated):
		return 0
	case ok1 && (si.length == 0 || hasFirst && last.less(first)):
		return si.length
	case g.lag != nil:
		return *g.lag
	}
	return -1
}
