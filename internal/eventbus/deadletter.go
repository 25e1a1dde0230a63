package eventbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
)

const (
	// deadDataMax bounds the copy of event_data a dead letter keeps; event_data_length and
	// event_data_sha256 still identify the whole value. Without it 50 entries of 1 MiB grew
	// the bridge's Redis by 64 MB.
	deadDataMax = 4 << 10
	// deadFieldMax bounds every other field copied from the entry, and the reason.
	deadFieldMax = 256
	// deadReasonMax bounds the reason, which may quote a panic value or an intake error.
	deadReasonMax = 1 << 10
	// erasePage is how many dead letters one XRANGE of EraseDeadLetters reads.
	erasePage = 100
)

// deadCopiedFields are the entry fields a dead letter keeps besides event_data: the metadata
// openedx/event-bus-redis writes. Other fields are not copied, so a producer cannot grow a
// dead letter by adding fields.
var deadCopiedFields = []string{"type", "source", "sourcehost", "time", "minorversion", "sourcelib"}

// deadStream is the dead-letter stream of stream, in the bridge's own Redis.
func deadStream(stream string) string { return stream + ".dead" }

// deadLetter copies an entry that will never be processed, with why and where from, to the
// dead-letter stream. The copy is bounded (deadDataMax of event_data, deadFieldMax of each other
// field) and carries user_id when it is known (userID > 0), so an erasure finds it: the
// event_data copy may hold an e-mail address. It goes to Redis for an operator, never to a log.
func (c *Consumer) deadLetter(ctx context.Context, stream, entryID string, fields map[string]string, userID int64, reason string) error {
	values := deadLetterValues(fields, userID, reason)
	values = append(values, "stream", stream, "entry_id", entryID, "group", c.cfg.Group)
	// Exact MAXLEN: approximate trimming works in whole radix-tree nodes and lets a stream of
	// 4 KiB entries overshoot the cap; dead letters are rare, so exact trimming costs nothing.
	err := c.own.XAdd(ctx, &redis.XAddArgs{
		Stream: deadStream(stream), MaxLen: c.cfg.DeadMaxLen, Values: values,
	}).Err()
	if err != nil {
		if ctx.Err() == nil {
			c.ownDown.failed(c.log, err, "op", "dead-letter entry", "stream", stream, "entry_id", entryID)
		}
		return fmt.Errorf("%w: XADD %s: %w", errStopBatch, deadStream(stream), err)
	}
	c.ownDown.recovered(c.log)
	return nil
}

// deadLetterValues builds the bounded field list of a dead letter.
func deadLetterValues(fields map[string]string, userID int64, reason string) []any {
	values := make([]any, 0, 2*(len(deadCopiedFields)+10))
	for _, k := range deadCopiedFields {
		if v, ok := fields[k]; ok {
			values = append(values, k, truncate(v, deadFieldMax))
		}
	}
	if id, ok := fields["id"]; ok {
		if validBusID(id) {
			values = append(values, "id", id)
		} else {
			// The raw value may be huge or an e-mail address; its hash still matches it.
			values = append(values, "id_sha256", sha256Hex(id), "id_length", len(id))
		}
	}
	if data, ok := fields["event_data"]; ok {
		values = append(values,
			"event_data", data[:min(len(data), deadDataMax)],
			"event_data_length", len(data),
			"event_data_sha256", sha256Hex(data))
	}
	if userID > 0 {
		values = append(values, "user_id", userID)
	}
	return append(values, "reason", truncate(reason, deadReasonMax))
}

// EraseDeadLetters removes the dead letters of the learner userID from the dead-letter stream
// of every stream in streams (the configured BRIDGE_EVENTBUS_STREAMS), in the bridge's Redis
// rdb, and returns how many it removed. Only dead letters whose entry was decoded far enough
// to know the learner carry user_id; the others hold no attributable data beyond the bounded
// event_data copy. The dead-letter streams are capped (Config.DeadMaxLen), so the scan is
// bounded.
func EraseDeadLetters(ctx context.Context, rdb redis.UniversalClient, streams []string, userID int64) (int, error) {
	if userID <= 0 {
		return 0, fmt.Errorf("erase dead letters: user id %d is not positive", userID)
	}
	want := strconv.FormatInt(userID, 10)
	removed := 0
	for _, s := range streams {
		dead := deadStream(s)
		from := "-"
		for {
			page, err := rdb.XRangeN(ctx, dead, from, "+", erasePage).Result()
			if err != nil {
				return removed, fmt.Errorf("erase dead letters of user %d: XRANGE %s: %w", userID, dead, err)
			}
			var ids []string
			for _, m := range page {
				if v, _ := m.Values["user_id"].(string); v == want {
					ids = append(ids, m.ID)
				}
			}
			if len(ids) > 0 {
				n, err := rdb.XDel(ctx, dead, ids...).Result()
				if err != nil {
					return removed, fmt.Errorf("erase dead letters of user %d: XDEL %s: %w", userID, dead, err)
				}
				removed += int(n)
			}
			if len(page) < erasePage {
				break
			}
			from = "(" + page[len(page)-1].ID // exclusive start: Redis ≥ 6.2
		}
	}
	return removed, nil
}

// userIDOf digs the LMS user id out of an entry that failed to decode as a whole (a field too
// long, an address missing), so its dead letter can be erased with the learner. The payload of
// every handled type is one record holding a "user" record with the id. 0 when unknown.
func userIDOf(fields map[string]string) (id int64) {
	defer func() {
		if recover() != nil {
			id = 0 // the decoder already failed on this entry once: a second failure is no news
		}
	}()
	t := strings.TrimSpace(fields["type"])
	data, ok := fields["event_data"]
	if _, handled := edx.KindOf(t); !handled || !ok || len(data) > maxEventData {
		return 0
	}
	rec, err := edx.DecodeAvro(t, []byte(data))
	if err != nil {
		return 0
	}
	for _, payload := range rec {
		p, _ := payload.(map[string]any)
		user, _ := p["user"].(map[string]any)
		if n, ok := user["id"].(int64); ok && n > 0 {
			return n
		}
	}
	return 0
}

// maxBusID is the longest event id the consumer passes on, stores or logs.
const maxBusID = 200

// validBusID reports whether an entry's id field may be stored and logged: at most maxBusID
// bytes of valid UTF-8 without control characters and without "@" (ids are UUIDs; an
// e-mail-shaped id would otherwise become a key and reach log lines). Empty is valid: the
// event is then not de-duplicated by id.
func validBusID(id string) bool {
	if len(id) > maxBusID || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '@' {
			return false
		}
	}
	return true
}

// logID is what a log line may show of an id field: the value when valid, else nothing.
func logID(id string) string {
	if validBusID(id) {
		return id
	}
	return "(invalid)"
}

// errInvalidID is the dead-letter reason of an entry whose id may not be stored.
var errInvalidID = fmt.Errorf("%w: field id: longer than %d bytes, not UTF-8, or has a control character or an at sign", edx.ErrUndecodable, maxBusID)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
