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

var (
	// errStopBatch says an entry could not be finished because the bridge's Redis is failing or
	// Run is stopping: no further entry of the batch is started, since it would fail the same
	// way. The entry and those not started stay pending and are read again after the backoff.
	errStopBatch = errors.New("entry not finished")
	// errEntryFailed says the intake failed on this entry and the failure counted: the entry
	// and its learner's later entries of the batch stay pending, the other learners go on.
	errEntryFailed = errors.New("entry failed")
)

// readBatch reads once from all streams, processes what came on the lanes (handleBatch) and
// acknowledges the finished entries in one round trip. A stream in st.drain is read from this
// consumer's pending list (after the id in st.drain), the others from the new entries with
// ">". The read blocks only when every stream reads new entries: Redis answers a pending-list
// read at once, so blocking would not apply anyway.
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

	var jobs []job
	for _, xs := range res {
		_, draining := st.drain[xs.Stream]
		for _, m := range xs.Messages {
			jobs = append(jobs, job{stream: xs.Stream, msg: m, redelivered: draining})
		}
	}
	c.handleBatch(ctx, jobs)

	// Entries finish out of order across lanes. A drained stream is read again after its
	// longest finished prefix; a stream read with ">" that left entries unfinished has them in
	// this consumer's pending list now. The finished entries after an unfinished one are
	// acknowledged below and so are not read again.
	ok := true
	next := 0
	for _, xs := range res {
		from, draining := st.drain[xs.Stream]
		prefix := true
		for _, m := range xs.Messages {
			if jobs[next].done {
				if st.acks == nil {
					st.acks = map[string][]string{}
				}
				st.acks[xs.Stream] = append(st.acks[xs.Stream], m.ID)
			} else {
				ok, prefix = false, false
			}
			if draining && prefix {
				from = m.ID
			}
			next++
		}
		switch {
		case draining:
			st.drain[xs.Stream] = from
		case !prefix:
			st.drain[xs.Stream] = "0"
		}
	}
	return c.flushAcks(ctx, st) && ok
}

// maxEventData bounds the event_data of a handled type. A certificate or passing event with
// every text field at the parser's limit is a few KiB; anything far larger is not one, and
// decoding it would only cost memory before the parser refused it.
const maxEventData = 64 << 10

// process finishes one prepared entry: hands it to the handler, dead-letters it or skips it.
// It returns nil when the entry is finished and is to be acknowledged; otherwise it stays
// pending, and the error wraps errStopBatch or errEntryFailed. It runs on a lane: what it
// touches besides the job is safe for concurrent use.
func (c *Consumer) process(ctx context.Context, b *batch, j *job) error {
	stream, id, redelivered := j.stream, j.msg.ID, j.redelivered
	if j.msg.Values == nil {
		// Trimmed from the stream while pending: Redis keeps the id, the fields are gone.
		if redelivered {
			c.forgetFailures(ctx, stream, id)
		}
		c.metrics.trimmed(stream, 1)
		c.log.Warn("pending entry was trimmed from the stream before it was processed; it is lost to the bridge: run bridge backfill",
			"stream", stream, "entry_id", id)
		return nil
	}
	fields, ev := j.fields, j.ev

	var unsupported *edx.UnsupportedTypeError
	var pe *panicError
	switch err := j.err; {
	case errors.As(err, &unsupported):
		// Other services' events share the stream (badge.awarded from credentials, …).
		c.metrics.unsupported(stream, unsupported.Type)
		c.log.Debug("event type not handled; acknowledged", "stream", stream, "entry_id", id,
			"event_id", logID(fields["id"]), "type", typeLabel(unsupported.Type))
		return nil
	case errors.As(err, &pe):
		c.log.Error("panic while decoding an event-bus entry; moving it to the dead-letter stream", "stream", stream,
			"entry_id", id, "panic", pe.value, "stack", pe.stack)
		return c.bury(ctx, stream, id, fields, userIDOf(fields), pe.Error(), redelivered)
	case err != nil:
		// Undecodable now means undecodable forever: retrying would block the stream.
		return c.bury(ctx, stream, id, fields, userIDOf(fields), err.Error(), redelivered)
	}

	res, err := c.handle(ctx, ev)
	switch {
	case errors.As(err, &pe):
		c.log.Error("panic while handling an event-bus entry; moving it to the dead-letter stream", "stream", stream,
			"entry_id", id, "event_id", ev.ID, "user_id", ev.UserID, "panic", pe.value, "stack", pe.stack)
		return c.bury(ctx, stream, id, fields, ev.UserID, pe.Error(), redelivered)
	case err != nil:
		return c.handleFailed(ctx, b, stream, id, fields, ev, err)
	case res.Status == intake.StatusConflict:
		// Another event under an id already handled: kept for the operator, like the 409 a
		// webhook sender gets, rather than acted on or silently dropped.
		return c.bury(ctx, stream, id, fields, ev.UserID, res.Message, redelivered)
	}
	// If the acknowledgement fails, the entry is offered again and the intake, knowing the
	// event id, answers "duplicate".
	b.recorded.Store(true)
	if redelivered {
		c.forgetFailures(ctx, stream, id)
	}
	c.metrics.outcome(stream, outcomeProcessed)
	c.log.Debug("event recorded", "stream", stream, "entry_id", id, "event_id", ev.ID, "type", ev.Type,
		"user_id", ev.UserID, "status", res.Status, "jobs", len(res.Jobs))
	return nil
}

// handleFailed deals with an intake error: while the bridge's Redis is down the entry waits,
// uncounted; otherwise the failure counts, and the maxIntakeFailures-th failure of the same
// kind dead-letters the entry.
func (c *Consumer) handleFailed(ctx context.Context, b *batch, stream, id string, fields map[string]string, ev edx.Event, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errStopBatch, err) // shutting down
	}
	b.intakeFailed.Store(true)
	c.metrics.outcome(stream, outcomeFailed)
	attrs := []any{"stream", stream, "entry_id", id, "event_id", ev.ID, "user_id", ev.UserID}
	if c.queueDown(ctx, err) {
		c.intakeDown.failed(c.log, err, attrs...)
		c.log.Debug("event not recorded, the bridge's Redis is unavailable; entry stays pending", append(attrs, "err", err)...)
		return fmt.Errorf("%w: %w", errStopBatch, err)
	}
	if !b.counted.CompareAndSwap(false, true) {
		// One counted failure per batch, as when a failure stopped the batch: an intake that
		// fails every entry (a full Redis answering PING, say) must not bring every entry of a
		// batch to the dead-letter stream together.
		c.intakeDown.failed(c.log, err, attrs...)
		return fmt.Errorf("%w: %w", errEntryFailed, err)
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
		return c.bury(ctx, stream, id, fields, ev.UserID,
			fmt.Sprintf("intake failed %d times: %v", n, err), true)
	}
	c.intakeDown.failed(c.log, err, attrs...)
	c.log.Debug("event not recorded; entry stays pending", append(attrs, "failures", n, "err", err)...)
	return fmt.Errorf("%w: %w", errEntryFailed, err)
}

// bury dead-letters an entry that will never be processed; nil means it is to be acknowledged.
func (c *Consumer) bury(ctx context.Context, stream, id string, fields map[string]string, userID int64, reason string, redelivered bool) error {
	if err := c.deadLetter(ctx, stream, id, fields, userID, reason); err != nil {
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
