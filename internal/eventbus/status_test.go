package eventbus

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/testutil"
)

func TestStatus(t *testing.T) {
	ctx := context.Background()
	busServer, ownServer := testutil.StartRedis(t), testutil.StartRedis(t)
	for _, protocol := range []int{2, 3} { // XINFO replies differ between RESP2 and RESP3
		bus := redis.NewClient(&redis.Options{Addr: busServer.Addr, Protocol: protocol})
		own := redis.NewClient(&redis.Options{Addr: ownServer.Addr, Protocol: protocol})
		t.Cleanup(func() { _ = bus.Close(); _ = own.Close() })
		if err := bus.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := own.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}

		// Nothing exists yet.
		c := New(bus, own, newFakeHandler(), testConfig("web-1", certStream, badgesStream), nil, nil)
		got, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := StreamStatus{Stream: certStream, Group: testGroup, Lag: -1}
		if len(got) != 2 || got[0] != want {
			t.Errorf("RESP%d, before start: %+v", protocol, got)
		}

		// A group behind its stream: lag is what it has not read.
		produce(t, bus, badgesStream, passingEntry(t, eventID(1)), passingEntry(t, eventID(2)))
		if err := bus.XGroupCreate(ctx, badgesStream, testGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		got, err = c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := got[1]; s.Length != 2 || s.Lag != 2 || s.Pending != 0 || s.LastDeliveredID != "0-0" {
			t.Errorf("RESP%d, behind: %+v", protocol, s)
		}

		// After a run: caught up, nothing pending, one consumer, one dead letter.
		h := newFakeHandler()
		r := start(t, bus, own, h, testConfig("web-1", certStream, badgesStream))
		eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
		ids := produce(t, bus, certStream, certEntry(t, eventID(3)), entry{eventType: edx.TypeCertificateRevoked, id: eventID(4), data: []byte{7}})
		eventually(t, "processed", func() bool {
			dead, _ := own.XLen(ctx, certStream+".dead").Result()
			return h.recorded() == 3 && dead == 1 && pendingCount(t, bus, certStream) == 0 && pendingCount(t, bus, badgesStream) == 0
		})
		r.stop()
		got, err = r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want = StreamStatus{Stream: certStream, Group: testGroup, Length: 2, Pending: 0, Lag: 0, LastDeliveredID: ids[1], Consumers: 1, Dead: 1}
		if got[0] != want {
			t.Errorf("RESP%d, after run: %+v\nwant %+v", protocol, got[0], want)
		}
		if s := got[1]; s.Lag != 0 || s.Length != 2 || s.Dead != 0 {
			t.Errorf("RESP%d, after run: %+v", protocol, s)
		}
		// The same numbers as Prometheus series.
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(r.Collector())
		expected := fmt.Sprintf(`
# HELP bridge_eventbus_dead_entries Length of the stream's dead-letter stream in the bridge's Redis.
# TYPE bridge_eventbus_dead_entries gauge
bridge_eventbus_dead_entries{stream=%q} 0
bridge_eventbus_dead_entries{stream=%q} 1
# HELP bridge_eventbus_lag Entries in the stream the bridge's group has not read yet (-1 when Redis cannot tell).
# TYPE bridge_eventbus_lag gauge
bridge_eventbus_lag{stream=%q} 0
bridge_eventbus_lag{stream=%q} 0
# HELP bridge_eventbus_pending Entries delivered to the bridge's group and not yet acknowledged.
# TYPE bridge_eventbus_pending gauge
bridge_eventbus_pending{stream=%q} 0
bridge_eventbus_pending{stream=%q} 0
`, badgesStream, certStream, badgesStream, certStream, badgesStream, certStream)
		if err := promtest.GatherAndCompare(reg, strings.NewReader(expected)); err != nil {
			t.Errorf("RESP%d metrics: %v", protocol, err)
		}
	}
}

func TestEntryIDOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{{"0-0", "1-0", true}, {"5-2", "5-10", true}, {"10-0", "9-99", false}, {"7-1", "7-1", false}, {"3", "3-1", true}} {
		a, ok1 := parseEntryID(tc.a)
		b, ok2 := parseEntryID(tc.b)
		if !ok1 || !ok2 || a.less(b) != tc.less {
			t.Errorf("%s < %s: got %v, want %v", tc.a, tc.b, a.less(b), tc.less)
		}
	}
	if _, ok := parseEntryID("x-1"); ok {
		t.Error("parsed x-1")
	}
}
