package config

import (
	"context"
	"strings"
	"testing"
)

// Contract 9.4: the badge stream lives on the event-bus Redis, so it needs its URL.
func TestBadgeStreamNeedsTheEventBus(t *testing.T) {
	for _, vars := range []map[string]string{
		{"BRIDGE_EVENTBUS_BADGE_STREAM": "dev-learning-badges-lifecycle"},
		{"BRIDGE_EVENTBUS_BADGE_STREAM": "bad stream", "BRIDGE_EVENTBUS_REDIS_URL": "redis://bus:6379/0"},
	} {
		_, err := LoadFrom(context.Background(), env(vars))
		if err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_EVENTBUS_BADGE_STREAM") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v: error %q: want one line naming BRIDGE_EVENTBUS_BADGE_STREAM", vars, err)
		}
	}
	c, err := LoadFrom(context.Background(), env(map[string]string{
		"BRIDGE_EVENTBUS_BADGE_STREAM": "dev-learning-badges-lifecycle", "BRIDGE_EVENTBUS_REDIS_URL": "redis://bus:6379/0",
	}))
	if err != nil || c.EventBusBadgeStream != "dev-learning-badges-lifecycle" {
		t.Fatalf("%+v %v", c.EventBusBadgeStream, err)
	}
	if c, err := LoadFrom(context.Background(), env(nil)); err != nil || c.EventBusBadgeStream != "" {
		t.Fatalf("default: %q %v", c.EventBusBadgeStream, err)
	}
}
