package eventbus

import (
	"context"
	"strings"
	"testing"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
)

// conflictHandler answers "conflict" for one event id, as intake does for an id already handled
// with different content.
type conflictHandler struct {
	*fakeHandler
	id string
}

func (h conflictHandler) Handle(ctx context.Context, ev edx.Event, via string) (intake.Result, error) {
	if ev.ID == h.id {
		return intake.Result{Status: intake.StatusConflict, Message: "conflict: event reused"}, nil
	}
	return h.fakeHandler.Handle(ctx, ev, via)
}

// An entry that reuses a handled event id for other content is kept as a dead letter with the
// reason (the bus's 409), acknowledged, and does not hold up the stream.
func TestConflictingEntryIsDeadLettered(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := conflictHandler{fakeHandler: newFakeHandler(), id: eventID(1)}
	start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))
	eventually(t, "the other entry recorded", func() bool { return h.recorded() == 1 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	dead := deadLetters(t, own, certStream)
	if len(dead) != 1 || !strings.Contains(dead[0].Values["reason"].(string), "conflict") {
		t.Fatalf("dead letters %v, want the conflicting entry", dead)
	}
}
