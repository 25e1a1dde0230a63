package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
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
			if err := c.process(ctx, st, xs.Stream, m, draining); err != nil {
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
	return c.flushAcks(ctx, st) && ok
}

// maxEventData bounds the event_data of a handled type. A certificate or passing event with
// every text field at the parser's limit is a few KiB; anything far larger is not one, and
// decoding it would only cost memory before the parser refused it.
const maxEventData = 64 << 10

// process finishes one entry: hands it to the handler, dead-letters it or skips it, and
// acknowledges it only then. redelivered says the entry came from a pending list, so it may
// carry a failure count. A non-nil error means the entry stays pending.
func (c *Consumer) process(ctx context.Context, st *runState, stream string, m redis.XMessage, redelivered bool) error {
	if m.Values == nil {
		// Trimmed from the stream while pending: Redis keeps the id, the fields are gone.
		if err := c.ack(ctx, st, stream, m.ID); err != nil {
			return err
		}
		if redelivered {
			c.forgetFailures(ctx, stream, m.ID)
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

	ev, err := c.decode(fields)
	var unsupported *edx.UnsupportedTypeError
	var pe *panicError
	switch {
	case errors.As(err, &unsupported):
		// Other services' events share the stream (badge.awarded from credentials, …).
		if err := c.ack(ctx, st, stream, m.ID); err != nil {
			return err
		}
		c.metrics.unsupported(stream, unsupported.Type)
		c.log.Debug("event type not handled; acknowledged", "stream", stream, "entry_id", m.ID,
			"event_id", logID(fields["id"]), "type", typeLabel(unsupported.Type))
		return nil
	case errors.As(err, &pe):
		c.log.Error("panic while decoding an event-bus entry; moving it to the dead-letter stream", "stream", stream,
			"entry_id", m.ID, "panic", pe.value, "stack", pe.stack)
		return c.bury(ctx, st, stream, m.ID, fields, userIDOf(fields), pe.Error(), redelivered)
	case err != nil:
		// Undecodable now means undecodable forever: retrying would block the stream.
		return c.bury(ctx, st, stream, m.ID, fields, userIDOf(fields), err.Error(), redelivered)
	}

	res, err := c.handle(ctx, ev)
	switch {
	case errors.As(err, &pe):
		c.log.Error("panic while handling an event-bus entry; moving it to the dead-letter stream", "stream", stream,
			"entry_id", m.ID, "event_id", ev.ID, "user_id", ev.UserID, "panic", pe.value, "stack", pe.stack)
		return c.bury(ctx, st, stream, m.ID, fields, ev.UserID, pe.Error(), redelivered)
	case err != nil:
		return c.handleFailed(ctx, st, stream, m.ID, fields, ev, err)
	case res.Status == intake.StatusConflict:
		// Another event under an id already handled: kept for the operator, like the 409 a
		// webhook sender gets, rather than acted on or silently dropped.
		return c.bury(ctx, st, stream, m.ID, fields, ev.UserID, res.Message, redelivered)
	}
	c.intakeDown.recovered(c.log)
	if err := c.ack(ctx, st, stream, m.ID); err != nil {
		// Offered again later; the intake knows the event id and answers "duplicate".
		return err
	}
	if redelivered {
		c.forgetFailures(ctx, stream, m.ID)
	}
	c.metrics.outcome(stream, outcomeProcessed)
	c.log.Debug("event recorded", "stream", stream, "entry_id", m.ID, "event_id", ev.ID, "type", ev.Type,
		"user_id", ev.UserID, "status", res.Status, "jobs", len(res.Jobs))
	return nil
}

// handleFailed deals with an intake error: while the bridge's Redis is down the entry waits,
// uncounted; otherwise the failure counts, and the maxIntakeFailures-th failure of the same
// kind dead-letters the entry.
func (c *Consumer) handleFailed(ctx context.Context, st *runState, stream, id string, fields map[string]string, ev edx.Event, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errStopBatch, err) // shutting down
	}
	c.metrics.outcome(stream, outcomeFailed)
	attrs := []any{"stream", stream, "entry_id", id, "event_id", ev.ID, "user_id", ev.UserID}
	if c.queueDown(ctx, err) {
		c.intakeDown.failed(c.log, err, attrs...)
		c.log.Debug("event not recorded, the bridge's Redis is unavailable; entry stays pending", append(attrs, "err", err)...)
		return fmt.Errorf("%w: %w", errStopBatch, err)
	}
	n, cerr := c.countFailure(ctx, stream, id, err)
	if cerr != nil {
		// The bridge's Redis failed just now: this failure does not count either.
		if ctx.Err() == nil {
			c.ownDown.failed(c.log, cerr, attrs...)
		}
		return fmt.Errorf("%w: %w", errStopBatch, err)
	}
	c.ownDown.recovered(c.log)
	if n >= maxIntakeFailures {
		c.log.Error("the intake failed on an event-bus entry repeatedly; moving it to the dead-letter stream",
			append(attrs, "failures", n, "err", err)...)
		return c.bury(ctx, st, stream, id, fields, ev.UserID,
			fmt.Sprintf("intake failed %d times: %v", n, err), true)
	}
	c.intakeDown.failed(c.log, err, attrs...)
	c.log.Debug("event not recorded; entry stays pending", append(attrs, "failures", n, "err", err)...)
	return fmt.Errorf("%w: %w", errStopBatch, err)
}

// bury dead-letters an entry that will never be processed and acknowledges it.
func (c *Consumer) bury(ctx context.Context, st *runState, stream, id string, fields map[string]string, userID int64, reason string, redelivered bool) error {
	if err := c.deadLetter(ctx, stream, id, fields, userID, reason); err != nil {
		return err
	}
	if err := c.ack(ctx, st, stream, id); err != nil {
		return err
	}
	if redelivered {
		c.forgetFailures(ctx, stream, id)
	}
	c.metrics.outcome(stream, outcomeDead)
	c.log.Warn("entry moved to the dead-letter stream", "stream", stream, "entry_id", id,
		"event_id", logID(fields["id"]), "dead_letter_stream", deadStream(stream), "reason", maskEmails(truncate(reason, deadFieldMax)))
	return nil
}

// decode decodes an entry with c.decoder; a panic comes back as a *panicError.
func (c *Consumer) decode(fields map[string]string) (ev edx.Event, err error) {
	defer func() {
		if v := recover(); v != nil {
			ev, err = edx.Event{}, recovered("decoding", v)
		}
	}()
	return c.decoder(fields)
}

// decodeEntry checks the bounds of an entry of a handled type and decodes it.
func decodeEntry(fields map[string]string) (edx.Event, error) {
	if _, handled := edx.KindOf(strings.TrimSpace(fields["type"])); handled {
		if !validBusID(fields["id"]) {
			return edx.Event{}, errInvalidID
		}
		if n := len(fields["event_data"]); n > maxEventData {
			return edx.Event{}, fmt.Errorf("%w: field event_data: %d bytes, over the limit of %d", edx.ErrUndecodable, n, maxEventData)
		}
	}
	return edx.DecodeBusEntry(fields, time.Now())
}

// handle calls the handler; a panic comes back as a *panicError.
func (c *Consumer) handle(ctx context.Context, ev edx.Event) (res intake.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = intake.Result{}, recovered("handling", v)
		}
	}()
	return c.handler.Handle(ctx, ev, Via)
}

// ack marks an entry finished; flushAcks acknowledges the batch's finished entries.
func (c *Consumer) ack(_ context.Context, st *runState, stream, id string) error {
	if st.acks == nil {
		st.acks = map[string][]string{}
	}
	st.acks[stream] = append(st.acks[stream], id)
	return nil
}

// flushAcks acknowledges the batch's finished entries, every stream in one round trip. It runs
// even when Run's context has just ended, so finished work is not offered again. When it fails
// the entries stay pending: the stream is read again from its pending list, and the intake
// answers "duplicate" for what it already recorded.
func (c *Consumer) flushAcks(ctx context.Context, st *runState) bool {
	if len(st.acks) == 0 {
		return true
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	_, err := c.bus.Pipelined(actx, func(p redis.Pipeliner) error {
		for stream, ids := range st.acks {
			p.XAck(actx, stream, c.cfg.Group, ids...)
		}
		return nil
	})
	if err != nil {
		for stream := range st.acks {
			st.drain[stream] = "0"
		}
		c.busFailed(ctx, st, "acknowledge entries", err)
		clear(st.acks)
		return false
	}
	clear(st.acks)
	return true
}
