package eventbus

import (
	"context"
	"fmt"
)

const (
	claimBatch = 100
	// maxClaimRounds bounds one claim pass over a stream; whatever is left is claimed at the
	// next pass.
	maxClaimRounds = 1000
	// maxLoggedIDs bounds how many entry ids one log line lists.
	maxLoggedIDs = 10
)

// claim takes over the entries of stream that have been pending with any consumer for longer
// than ClaimIdle (a replica that died between read and acknowledgement), with XAUTOCLAIM over
// the whole pending list. The entries land in this consumer's pending list and are processed
// by the next read of it; claim reports whether there are any.
//
// Redis ≥ 7 drops entries that were trimmed from the stream while pending and lists their ids
// in a third reply element: they are counted as trimmed. Redis 6.2 claims them with no fields
// instead, and the pending read counts them.
func (c *Consumer) claim(ctx context.Context, stream string) (bool, error) {
	claimedAny := false
	cursor := "0-0"
	for range maxClaimRounds {
		reply, err := c.bus.Do(ctx, "XAUTOCLAIM", stream, c.cfg.Group, c.cfg.Consumer,
			c.cfg.ClaimIdle.Milliseconds(), cursor, "COUNT", claimBatch, "JUSTID").Slice()
		if err != nil {
			return claimedAny, fmt.Errorf("XAUTOCLAIM: %w", err)
		}
		if len(reply) < 2 {
			return claimedAny, fmt.Errorf("XAUTOCLAIM: %d elements in reply", len(reply))
		}
		next, _ := reply[0].(string)
		claimed, _ := reply[1].([]any)
		if len(claimed) > 0 {
			claimedAny = true
			c.log.Info("claimed entries pending longer than the claim threshold (a consumer stopped before acknowledging them)", "stream", stream, "count", len(claimed))
		}
		if len(reply) > 2 {
			if deleted, _ := reply[2].([]any); len(deleted) > 0 {
				ids := make([]string, 0, min(len(deleted), maxLoggedIDs))
				for _, d := range deleted[:min(len(deleted), maxLoggedIDs)] {
					s, _ := d.(string)
					ids = append(ids, s)
				}
				c.metrics.trimmed(stream, len(deleted))
				c.log.Warn("pending entries were trimmed from the stream before they were processed; they are lost to the bridge: run bridge backfill",
					"stream", stream, "count", len(deleted), "entry_ids", ids)
			}
		}
		if next == "" || next == "0-0" {
			return claimedAny, nil
		}
		cursor = next
		if ctx.Err() != nil {
			return claimedAny, ctx.Err()
		}
	}
	return claimedAny, nil
}
