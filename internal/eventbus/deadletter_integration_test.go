package eventbus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
)

// Dead letters of entries decoded far enough to know the learner carry user_id, and
// EraseDeadLetters removes exactly that learner's from every dead-letter stream, paging
// through them.
func TestEraseDeadLetters(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	c := start(t, bus, own, newFakeHandler(), testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })

	p := payload(t, "certificate-created.json")
	p["certificate"].(map[string]any)["user"].(map[string]any)["pii"].(map[string]any)["email"] = ""
	noEmail, err := edx.EncodeAvro(edx.TypeCertificateCreated, p)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, bus, certStream,
		entry{eventType: edx.TypeCertificateCreated, id: eventID(1), data: noEmail}, // user 42, known
		entry{eventType: edx.TypeCertificateCreated, id: eventID(2), data: []byte{1, 2, 3}})
	eventually(t, "dead-lettered", func() bool { return c.outcomes(t, certStream, outcomeDead) == 2 })
	dead := deadLetters(t, own, certStream)
	if dead[0].Values["user_id"] != "42" {
		t.Fatalf("user_id %v, want 42", dead[0].Values["user_id"])
	}
	if _, ok := dead[1].Values["user_id"]; ok {
		t.Fatal("undecodable entry has a user_id")
	}

	// More than one page on the other stream: every third of 250 is user 42's.
	ctx := context.Background()
	for i := range 250 {
		uid := int64(7)
		if i%3 == 0 {
			uid = 42
		}
		if err := own.XAdd(ctx, &redis.XAddArgs{Stream: deadStream(badgesStream),
			Values: deadLetterValues(map[string]string{"type": edx.TypePassingStatus, "event_data": "x"}, uid, "test")}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	n, err := EraseDeadLetters(ctx, own, []string{certStream, badgesStream, "never-written"}, 42)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1+84 {
		t.Errorf("removed %d, want 85", n)
	}
	for _, s := range []string{certStream, badgesStream} {
		for _, m := range deadLetters(t, own, s) {
			if m.Values["user_id"] == "42" {
				t.Errorf("%s still holds a dead letter of user 42", deadStream(s))
			}
		}
	}
	if got := len(deadLetters(t, own, certStream)) + len(deadLetters(t, own, badgesStream)); got != 1+166 {
		t.Errorf("%d dead letters left, want 167", got)
	}
	if _, err := EraseDeadLetters(ctx, own, []string{certStream}, 0); err == nil {
		t.Error("user id 0 accepted")
	}
}

// Failures are counted per entry and per kind: a different error starts over. The hash
// expires.
func TestCountFailure(t *testing.T) {
	_, own, _, _ := redisPair(t)
	c := New(nil, own, nil, testConfig("web-1", certStream), nil, nil)
	ctx := context.Background()
	a, b := errors.New("a"), errors.New("b")
	for i, step := range []struct {
		id   string
		err  error
		want int
	}{{"1-0", a, 1}, {"1-0", a, 2}, {"2-0", a, 1}, {"1-0", b, 1}, {"1-0", b, 2}, {"1-0", b, 3}} {
		n, err := c.countFailure(ctx, certStream, step.id, step.err)
		if err != nil || n != step.want {
			t.Fatalf("step %d: %d, %v; want %d", i, n, err, step.want)
		}
	}
	if ttl := own.TTL(ctx, c.failuresKey(certStream)).Val(); ttl <= 0 || ttl > failuresTTL {
		t.Errorf("TTL %v", ttl)
	}
	c.forgetFailures(ctx, certStream, "1-0")
	if n := own.HLen(ctx, c.failuresKey(certStream)).Val(); n != 1 {
		t.Errorf("%d counts left, want 1", n)
	}
}

// An intake error that does not say what failed counts as the queue Redis being down when
// the bridge's Redis does not answer a PING.
func TestQueueDownAsksRedis(t *testing.T) {
	_, own, _, ownServer := redisPair(t)
	c := New(nil, own, nil, testConfig("web-1", certStream), nil, nil)
	ctx := context.Background()
	plain := errors.New("record facts of user 42: something")
	if c.queueDown(ctx, plain) {
		t.Error("a plain error with Redis up counts as Redis down")
	}
	ownServer.Stop()
	start := time.Now()
	if !c.queueDown(ctx, plain) {
		t.Error("a plain error with Redis down does not count as Redis down")
	}
	if d := time.Since(start); d > pingTimeout+5*time.Second {
		t.Errorf("the check took %v", d)
	}
}
