package eventbus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func consumerNames(t *testing.T, c redis.UniversalClient, stream string) []string {
	t.Helper()
	cs, err := c.XInfoConsumers(context.Background(), stream, testGroup).Result()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS: %v", err)
	}
	names := make([]string, 0, len(cs))
	for _, x := range cs {
		names = append(names, x.Name)
	}
	slices.Sort(names)
	return names
}

// Consumers that stopped reading longer ago than GoneAfter and hold nothing pending are removed
// from the group; one with pending entries and the live ones stay.
func TestGoneConsumersAreRemoved(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	ctx := context.Background()
	produce(t, bus, certStream, certEntry(t, eventID(1)))
	if err := bus.XGroupCreate(ctx, certStream, testGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// gone-busy read the entry and never acknowledged it; gone-idle read nothing.
	if err := bus.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: testGroup, Consumer: "gone-busy", Streams: []string{certStream, ">"}, Count: 1, Block: -1,
	}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := bus.XGroupCreateConsumer(ctx, certStream, testGroup, "gone-idle").Err(); err != nil {
		t.Fatal(err)
	}
	// Long enough that a live consumer on a loaded 2-core machine is never idle that long.
	const goneAfter = 3 * time.Second
	time.Sleep(goneAfter + 200*time.Millisecond)

	h := newFakeHandler()
	for _, name := range []string{"web-1", "web-2"} {
		cfg := testConfig(name, certStream) // ClaimIdle 1 min: gone-busy keeps its entry
		cfg.GoneAfter = goneAfter
		start(t, bus, own, h, cfg)
	}
	want := []string{"gone-busy", "web-1", "web-2"}
	eventually(t, "gone-idle removed", func() bool { return slices.Equal(consumerNames(t, bus, certStream), want) })
	// Several more passes remove nothing else.
	time.Sleep(goneAfter)
	if got := consumerNames(t, bus, certStream); !slices.Equal(got, want) {
		t.Errorf("consumers %v, want %v", got, want)
	}
	if n := pendingCount(t, bus, certStream); n != 1 {
		t.Errorf("%d pending, want gone-busy's entry still pending", n)
	}
}
