package eventbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/durable"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
)

// slowWait covers tests that sit through several backoffs (up to ~6 s for five failures).
const slowWait = 40 * time.Second

// hookHandler runs hook before the fake intake; an error or a panic of hook is the intake's.
type hookHandler struct {
	fake *fakeHandler
	hook func(n int, ev edx.Event) error // n: calls for this event id so far, this one included
}

func (h *hookHandler) Handle(ctx context.Context, ev edx.Event, via string) (intake.Result, error) {
	h.fake.mu.Lock()
	h.fake.calls[ev.ID]++
	n := h.fake.calls[ev.ID]
	h.fake.mu.Unlock()
	if err := h.hook(n, ev); err != nil {
		return intake.Result{}, err
	}
	h.fake.mu.Lock()
	h.fake.calls[ev.ID]-- // the fake counts the call again
	h.fake.mu.Unlock()
	return h.fake.Handle(ctx, ev, via)
}

func eventuallyWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func deadLetters(t *testing.T, own redis.UniversalClient, stream string) []redis.XMessage {
	t.Helper()
	dead, err := own.XRange(context.Background(), deadStream(stream), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return dead
}

// A panic while handling one entry dead-letters that entry with the reason and the learner's
// id; the consumer goes on with the next entry and the panic value's address is not logged.
func TestPanicWhileHandlingIsDeadLettered(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := &hookHandler{fake: newFakeHandler(), hook: func(_ int, ev edx.Event) error {
		if ev.ID == eventID(1) {
			panic("cannot handle " + ev.Email)
		}
		return nil
	}}
	c := start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))

	eventually(t, "next entry recorded", func() bool { return h.fake.recorded() == 1 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	dead := deadLetters(t, own, certStream)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	v := dead[0].Values
	if r, _ := v["reason"].(string); !strings.Contains(r, "panic while handling") || strings.Contains(r, "@") {
		t.Errorf("reason %q", r)
	}
	if v["user_id"] != "42" || v["id"] != eventID(1) {
		t.Errorf("dead letter %v", v)
	}
	if c.exited() {
		t.Fatal("Run returned after the panic")
	}
	if n := h.fake.callsFor(eventID(1)); n != 1 {
		t.Errorf("panicking entry handed in %d times, want 1", n)
	}
}

// A panic of the decoder is recovered the same way.
func TestPanicWhileDecodingIsDeadLettered(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := newFakeHandler()
	c := startWith(t, bus, own, h, testConfig("web-1", certStream), func(c *Consumer) {
		c.decoder = func(f map[string]string) (edx.Event, error) {
			if f["id"] == eventID(1) {
				var parts []string
				_ = parts[len(f["id"])] // index out of range
			}
			return decodeEntry(f)
		}
	})
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))

	eventually(t, "next entry recorded", func() bool { return h.recorded() == 1 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	dead := deadLetters(t, own, certStream)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if r, _ := dead[0].Values["reason"].(string); !strings.Contains(r, "panic while decoding") {
		t.Errorf("reason %q", r)
	}
	if dead[0].Values["user_id"] != "42" {
		t.Errorf("user_id %v, want 42 (read from event_data)", dead[0].Values["user_id"])
	}
	if c.exited() {
		t.Fatal("Run returned after the panic")
	}
}

// An entry the intake rejects five times in a row is dead-lettered, its failure count is
// dropped, and the entries behind it are processed.
func TestRepeatedIntakeFailureIsDeadLettered(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	rejected := errors.New("ledger: row script refused the fact")
	h := &hookHandler{fake: newFakeHandler(), hook: func(_ int, ev edx.Event) error {
		if ev.ID == eventID(1) {
			return rejected
		}
		return nil
	}}
	c := start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))

	eventuallyWithin(t, slowWait, "entry behind it recorded", func() bool { return h.fake.recorded() == 1 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if n := h.fake.callsFor(eventID(1)); n != maxIntakeFailures {
		t.Errorf("rejected entry handed in %d times, want %d", n, maxIntakeFailures)
	}
	dead := deadLetters(t, own, certStream)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if r, _ := dead[0].Values["reason"].(string); !strings.Contains(r, "intake failed 5 times") || !strings.Contains(r, rejected.Error()) {
		t.Errorf("reason %q", r)
	}
	if dead[0].Values["user_id"] != "42" {
		t.Errorf("user_id %v, want 42", dead[0].Values["user_id"])
	}
	if n, _ := own.Exists(context.Background(), c.failuresKey(certStream)).Result(); n != 0 {
		t.Error("failure count left behind")
	}
}

// Failures that say the queue Redis is unreachable never count: the entry waits and is
// recorded when the intake works again, however often it failed.
func TestUnavailableQueueRedisDoesNotCount(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	const failures = maxIntakeFailures + 1
	h := &hookHandler{fake: newFakeHandler(), hook: func(n int, ev edx.Event) error {
		if ev.ID == eventID(1) && n <= failures {
			return &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}
		return nil
	}}
	start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)))

	eventuallyWithin(t, slowWait, "recorded once the intake works", func() bool { return h.fake.recorded() == 1 })
	if n := h.fake.callsFor(eventID(1)); n != failures+1 {
		t.Errorf("handed in %d times, want %d", n, failures+1)
	}
	if dead := deadLetters(t, own, certStream); len(dead) != 0 {
		t.Errorf("%d dead letters, want none", len(dead))
	}
}

// A write the queue Redis did not confirm durable (too few replicas for
// BRIDGE_REDIS_MIN_REPLICAS) never counts either, although that Redis answers PING: the entry
// stays pending, however long the replicas are away, and is recorded once they are back.
func TestUnconfirmedWriteDoesNotCount(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	const failures = maxIntakeFailures + 1
	h := &hookHandler{fake: newFakeHandler(), hook: func(n int, ev edx.Event) error {
		if ev.ID == eventID(1) && n <= failures {
			return fmt.Errorf("event %q: %w", ev.ID, fmt.Errorf("%w: 0 of 1 replicas acknowledged the write within 1s", durable.ErrNotConfirmed))
		}
		return nil
	}}
	start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)))

	eventuallyWithin(t, slowWait, "recorded once the write is confirmed", func() bool { return h.fake.recorded() == 1 })
	if n := h.fake.callsFor(eventID(1)); n != failures+1 {
		t.Errorf("handed in %d times, want %d", n, failures+1)
	}
	if dead := deadLetters(t, own, certStream); len(dead) != 0 {
		t.Errorf("%d dead letters, want none", len(dead))
	}
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
}

// Event-type labels come from the known set: a hostile type string makes no series of its
// own, and never reaches a log line.
func TestTypeLabelIsBounded(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	c := start(t, bus, own, newFakeHandler(), testConfig("web-1", badgesStream))
	eventually(t, "group created", func() bool { return groupExists(bus, badgesStream) })
	produce(t, bus, badgesStream,
		entry{eventType: "org.evil.x" + strings.Repeat("1", 50), id: "e-1", data: []byte("x")},
		entry{eventType: exampleEmail, id: "e-2", data: []byte("x")},
		entry{eventType: "org.openedx.learning.course.unenrollment.completed.v1", id: "e-3", data: []byte("x")})
	eventually(t, "all acknowledged as unsupported", func() bool { return c.outcomes(t, badgesStream, outcomeUnsupported) == 3 })
	if n := promtest.CollectAndCount(c.metrics.byType); n != 2 {
		t.Errorf("%d type series, want 2 (unenrollment.completed and other)", n)
	}
	if v := promtest.ToFloat64(c.metrics.byType.WithLabelValues("other")); v != 2 {
		t.Errorf("other = %v, want 2", v)
	}
}

// Over-long event_data, an over-long id and an e-mail-shaped id are dead-lettered before the
// intake sees them; the dead letter keeps 4 KiB of event_data with its length and SHA-256, no
// raw invalid id, only the known metadata fields, each bounded.
func TestOversizedEntriesAreDeadLetteredBounded(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := newFakeHandler()
	start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	ctx := context.Background()

	// A decodable certificate whose name is 1 MiB: refused by size, whatever the parser allows.
	p := payload(t, "certificate-created.json")
	p["certificate"].(map[string]any)["user"].(map[string]any)["pii"].(map[string]any)["name"] = strings.Repeat("n", 1<<20)
	hugeData, err := edx.EncodeAvro(edx.TypeCertificateCreated, p)
	if err != nil {
		t.Fatal(err)
	}
	huge := string(hugeData)
	if err := bus.XAdd(ctx, &redis.XAddArgs{Stream: certStream, Values: []any{
		"type", edx.TypeCertificateCreated, "id", eventID(1), "sourcehost", strings.Repeat("h", 10000),
		"junk", strings.Repeat("j", 10000), "event_data", huge,
	}}).Err(); err != nil {
		t.Fatal(err)
	}
	good := certEntry(t, "")
	longID, emailID := strings.Repeat("a", 50000), exampleEmail
	produce(t, bus, certStream,
		entry{eventType: good.eventType, id: longID, data: good.data},
		entry{eventType: good.eventType, id: emailID, data: good.data},
		certEntry(t, eventID(9)))

	eventually(t, "valid entry recorded", func() bool { return h.recorded() == 1 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if h.callsFor(longID)+h.callsFor(emailID)+h.callsFor(eventID(1)) != 0 {
		t.Error("an entry with an invalid id or oversized event_data reached the intake")
	}
	dead := deadLetters(t, own, certStream)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	v := dead[0].Values
	sum := sha256.Sum256([]byte(huge))
	if d, _ := v["event_data"].(string); len(d) != deadDataMax {
		t.Errorf("event_data copy of %d bytes, want %d", len(d), deadDataMax)
	}
	if v["event_data_length"] != strconv.Itoa(len(huge)) || v["event_data_sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("length %v, sha256 %v", v["event_data_length"], v["event_data_sha256"])
	}
	if s, _ := v["sourcehost"].(string); len(s) > deadFieldMax+len("…") {
		t.Errorf("sourcehost copy of %d bytes", len(s))
	}
	if _, ok := v["junk"]; ok {
		t.Error("an unknown field was copied")
	}
	if r, _ := v["reason"].(string); !strings.Contains(r, "event_data") {
		t.Errorf("reason %q", r)
	}
	for i, want := range []int{len(longID), len(emailID)} {
		v := dead[i+1].Values
		if _, ok := v["id"]; ok || v["id_length"] != strconv.Itoa(want) {
			t.Errorf("dead letter %d keeps the invalid id: %v", i+1, v["id"])
		}
		if r, _ := v["reason"].(string); !strings.Contains(r, "field id") {
			t.Errorf("reason %q", r)
		}
		if v["user_id"] != "42" {
			t.Errorf("user_id %v, want 42", v["user_id"])
		}
	}
	var total int
	for _, m := range dead {
		for k, x := range m.Values {
			total += len(k) + len(x.(string))
		}
	}
	if total > 3*(deadDataMax+1024) {
		t.Errorf("dead letters hold %d bytes", total)
	}
}

// The dead-letter stream never holds more than DeadMaxLen entries.
func TestDeadLetterStreamIsCapped(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	cfg := testConfig("web-1", certStream)
	cfg.DeadMaxLen = 5
	c := start(t, bus, own, newFakeHandler(), cfg)
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	for i := range 20 {
		produce(t, bus, certStream, entry{eventType: edx.TypeCertificateCreated, id: eventID(i), data: []byte{1, 2, 3}})
	}
	eventually(t, "all dead-lettered", func() bool { return c.outcomes(t, certStream, outcomeDead) == 20 })
	if n, err := own.XLen(context.Background(), deadStream(certStream)).Result(); err != nil || n != 5 {
		t.Errorf("dead-letter stream holds %d entries (%v), want 5", n, err)
	}
}
