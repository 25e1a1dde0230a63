package eventbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
)

// ackTimeout bounds the acknowledgement of an entry the intake has recorded; it runs even
// when Run's context has just ended, so finished work is not offered again.
const ackTimeout = 5 * time.Second

// errStopBatch stops the rest of a stream's batch after an entry could not be finished; the
// entry and those after it stay pending and are read again after the backoff.
var errStopBatch = errors.New("entry not finished")

// readBatch reads once from all streams and processes what came, in order per stream. A
// stream in st.drain is read from this consumer's pending list (after the id in st.drain),
// the others from the new entries with ">". The read blocks only when every stream reads new
// entries: Redis answers a pending-list read at once, so blocking would not apply anyway.
func (c *Consumer) readBatch(ctx context.Context, st *runState) bool {
	streams := make([]string, 0, 2*len(c.cfg.Streams))
	streams = append(streams, c.cfg.Streams...)
	block := c.cfg.Block
	for _, s := range c.cfg.Streams {
		id, draining := st.drain[s]
		if !draining {
			id = ">"
		} else {
			block = -1 // no BLOCK argument
		}
		streams = append(streams, id)
	}
	res, err := c.bus.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.cfg.Group, Consumer: c.cfg.Consumer, Streams: streams, Count: int64(c.cfg.Count), Block: block,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) { // Nil: BLOCK timed out, nothing new
		c.busFailed(ctx, st, "read entries", err)
		return false
	}
	c.busDown.recovered(c.log)

	// A drained stream whose pending-list read came back empty (Redis lists it with no
	// entries) reads new entries from now on.
	got := make(map[string]bool, len(res))
	for _, xs := range res {
		if len(xs.Messages) > 0 {
			got[xs.Stream] = true
		}
	}
	for s := range st.drain {
		if !got[s] {
			delete(st.drain, s)
		}
	}

	ok := true
	for _, xs := range res {
		from, draining := st.drain[xs.Stream]
		for _, m := range xs.Messages {
			if err := c.process(ctx, st, xs.Stream, m); err != nil {
				ok = false
				if !draining {
					// The rest of the batch is in this consumer's pending list now.
					st.drain[xs.Stream] = "0"
				} else {
					st.drain[xs.Stream] = from
				}
				break
			}
			if draining {
				from = m.ID
				st.drain[xs.Stream] = from
			}
		}
	}
	return ok
}

// process finishes one entry: hands it to the handler, dead-letters it or skips it, and
// acknowledges it only then. A non-nil error means the entry stays pending.
func (c *Consumer) process(ctx context.Context, st *runState, stream string, m redis.XMessage) error {
	if m.Values == nil {
		// Trimmed from the stream while pending: Redis keeps the id, the fields are gone.
		if err := c.ack(ctx, st, stream, m.ID); err != nil {
			return err
		}
		c.metrics.trimmed(stream, 1)
		c.log.Warn("pending entry was trimmed from the stream before it was processed; it is lost to the bridge: run bridge backfill",
			"stream", stream, "entry_id", m.ID)
		return nil
	}
	fields := make(map[string]string, len(m.Values))
	for k, v := range m.Values {
		if s, ok := v.(string); ok {
			fields[k] = s
		} else {
			fields[k] = fmt.Sprint(v)
		}
	}

	ev, err := edx.DecodeBusEntry(fields, time.Now())
	var unsupported *edx.UnsupportedTypeError
	switch {
	case errors.As(err, &unsupported):
		// Other services' events share the stream (badge.awarded from credentials, …).
		if err := c.ack(ctx, st, stream, m.ID); err != nil {
			return err
		}
		c.metrics.unsupported(stream, unsupported.Type)
		c.log.Debug("event type not handled; acknowledged", "stream", stream, "entry_id", m.ID, "event_id", fields["id"], "type", unsupported.Type)
		return nil
	case err != nil:
		// Undecodable now means undecodable forever: retrying would block the stream.
		if err := c.deadLetter(ctx, stream, m.ID, fields, err); err != nil {
			return err
		}
		if err := c.ack(ctx, st, stream, m.ID); err != nil {
			return err
		}
		c.metrics.outcome(stream, outcomeDead)
		c.log.Warn("undecodable entry moved to the dead-letter stream", "stream", stream, "entry_id", m.ID,
			"event_id", fields["id"], "dead_letter_stream", deadStream(stream), "reason", err.Error())
		return nil
	}

	res, err := c.handler.Handle(ctx, ev, Via)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", errStopBatch, err) // shutting down
		}
		c.metrics.outcome(stream, outcomeFailed)
		c.intakeDown.failed(c.log, err, "stream", stream, "entry_id", m.ID, "event_id", ev.ID, "user_id", ev.UserID)
		c.log.Debug("event not recorded; entry stays pending", "stream", stream, "entry_id", m.ID, "event_id", ev.ID, "error", err)
		return fmt.Errorf("%w: %w", errStopBatch, err)
	}
	c.intakeDown.recovered(c.log)
	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := c.ack(ackCtx, st, stream, m.ID); err != nil {
		// Offered again later; the intake knows the event id and answers "duplicate".
		return err
	}
	c.metrics.outcome(stream, outcomeProcessed)
	c.log.Debug("event recorded", "stream", stream, "entry_id", m.ID, "event_id", ev.ID, "type", ev.Type,
		"user_id", ev.UserID, "status", res.Status, "jobs", len(res.Jobs))
	return nil
}

func (c *Consumer) ack(ctx context.Context, st *runState, stream, id string) error {
	if err := c.bus.XAck(ctx, stream, c.cfg.Group, id).Err(); err != nil {
		c.busFailed(ctx, st, "acknowledge entry", err, "stream", stream, "entry_id", id)
		return fmt.Errorf("%w: XACK %s %s: %w", errStopBatch, stream, id, err)
	}
	return nil
}

// deadStream is the dead-letter stream of stream, in the bridge's own Redis.
func deadStream(stream string) string { return stream + ".dead" }

// deadLetter copies an undecodable entry, with why and where from, to the dead-letter stream.
// The copy carries the entry's data (and so possibly an e-mail address): it goes to Redis for
// an operator, never to a log.
func (c *Consumer) deadLetter(ctx context.Context, stream, id string, fields map[string]string, reason error) error {
	values := make(map[string]any, len(fields)+4)
	for k, v := range fields {
		values[k] = v
	}
	values["reason"] = reason.Error()
	values["stream"] = stream
	values["entry_id"] = id
	values["group"] = c.cfg.Group
	err := c.own.XAdd(ctx, &redis.XAddArgs{
		Stream: deadStream(stream), MaxLen: c.cfg.DeadMaxLen, Approx: true, Values: values,
	}).Err()
	if err != nil {
		if ctx.Err() == nil {
			c.ownDown.failed(c.log, err, "op", "dead-letter entry", "stream", stream, "entry_id", id)
		}
		return fmt.Errorf("%w: XADD %s: %w", errStopBatch, deadStream(stream), err)
	}
	c.ownDown.recovered(c.log)
	return nil
}
