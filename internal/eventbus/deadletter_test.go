package eventbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// Entries that cannot be decoded go to <stream>.dead in the bridge's own Redis with the
// reason, are acknowledged, and do not hold up the entries behind them.
func TestPoisonEntriesAreDeadLettered(t *testing.T) {
	bus, own, _, ownServer := redisPair(t)
	h := newFakeHandler()
	c := start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })

	garbage := entry{eventType: edx.TypeCertificateCreated, id: eventID(1), data: []byte{1, 2, 3}}
	p := payload(t, "certificate-created.json")
	p["certificate"].(map[string]any)["user"].(map[string]any)["pii"].(map[string]any)["email"] = ""
	data, err := edx.EncodeAvro(edx.TypeCertificateCreated, p)
	if err != nil {
		t.Fatal(err)
	}
	noEmail := entry{eventType: edx.TypeCertificateCreated, id: eventID(2), data: data}
	ids := produce(t, bus, certStream, garbage, noEmail, certEntry(t, eventID(3)), certEntry(t, eventID(4)))

	eventually(t, "good entries recorded", func() bool { return h.recorded() == 2 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if h.callsFor(eventID(1))+h.callsFor(eventID(2)) != 0 {
		t.Error("an undecodable entry reached the handler")
	}
	ctx := context.Background()
	dead, err := own.XRange(ctx, certStream+".dead", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for i, want := range []string{"undecodable event", "certificate.user.pii.email: missing"} {
		v := dead[i].Values
		if reason, _ := v["reason"].(string); !strings.Contains(reason, want) {
			t.Errorf("dead letter %d: reason %q, want it to contain %q", i, reason, want)
		}
		if v["stream"] != certStream || v["entry_id"] != ids[i] || v["group"] != testGroup ||
			v["id"] != eventID(i+1) || v["type"] != edx.TypeCertificateCreated || v["event_data"] == nil || v["sourcelib"] != "11.2.0" {
			t.Errorf("dead letter %d: %v", i, v)
		}
	}
	if n, _ := bus.Exists(ctx, certStream+".dead").Result(); n != 0 {
		t.Error("dead letter written to the bus Redis")
	}
	if got := c.outcomes(t, certStream, outcomeDead); got != 2 {
		t.Errorf("dead = %v, want 2", got)
	}

	// While the dead-letter stream cannot be written, the entry stays pending.
	ownServer.Stop()
	produce(t, bus, certStream, entry{eventType: edx.TypeCertificateCreated, id: eventID(5), data: []byte{9}})
	time.Sleep(500 * time.Millisecond)
	if n := pendingCount(t, bus, certStream); n != 1 {
		t.Errorf("%d pending while the own Redis is down, want 1", n)
	}
	ownServer.Restart(t)
	eventually(t, "dead-lettered after the own Redis is back", func() bool {
		n, err := own.XLen(ctx, certStream+".dead").Result()
		return err == nil && n == 1
	})
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
}
