package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

// xaddCertificate writes a certificate.created entry exactly as openedx/event-bus-redis does.
func xaddCertificate(t *testing.T, bus *redis.Client, stream, id string, uid int64) {
	t.Helper()
	raw, _ := os.ReadFile("../../internal/edx/testdata/certificate-created.json")
	var body map[string]any
	json.Unmarshal(raw, &body)
	cert := body["certificate"].(map[string]any)
	user := cert["user"].(map[string]any)
	user["id"] = uid
	user["pii"].(map[string]any)["email"] = fmt.Sprintf("bus%d@example.org", uid)
	data, err := edx.EncodeAvro(edx.TypeCertificateCreated, body)
	if err != nil {
		t.Fatal(err)
	}
	err = bus.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, MaxLen: 10000, Approx: true, Values: []any{
		"type", edx.TypeCertificateCreated, "id", id, "source", "openedx/lms/web",
		"time", "2024-05-27T12:25:45.678901+00:00", "minorversion", "0", "sourcehost", "lms-1",
		"sourcelib", "11.2.0", "event_data", data,
	}}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEventBusAcrossRestart: an operator with Tutor's event bus starts the bridge with the
// event-bus URL; every passing certificate becomes one badge, with a restart in the middle.
func TestEventBusAcrossRestart(t *testing.T) {
	db := testutil.StartRedis(t)
	busSrv := testutil.StartRedis(t)
	bus := busSrv.Client(t)
	sb := sandbox.New(sandbox.Options{Username: "svc", Password: "pw-0123456789", BadgeClasses: []string{"BusClass00000000000001"}})
	host := httptest.NewServer(sb)
	defer host.Close()
	mapping := filepath.Join(t.TempDir(), "mapping.yaml")
	os.WriteFile(mapping, []byte("badges:\n  - name: Demo\n    badge_class: BusClass00000000000001\n    when:\n      courses: [\"course-v1:OpenedX+DemoX+*\"]\n"), 0o600)
	const stream = "dev-learning-certificate-lifecycle"
	env := []string{
		"BRIDGE_REDIS_URL=" + db.URL, "BRIDGE_BADGR_URL=" + host.URL, "BRIDGE_BADGR_USERNAME=svc",
		"BRIDGE_BADGR_PASSWORD=pw-0123456789", "BRIDGE_MAPPING_FILE=" + mapping,
		"BRIDGE_EVENTBUS_REDIS_URL=" + busSrv.URL, "BRIDGE_BADGR_TIMEOUT=2s", "BRIDGE_SETTLE=2s", "BRIDGE_SHUTDOWN_GRACE=5s",
	}
	holders := func() map[string]int {
		out := map[string]int{}
		for _, a := range sb.Assertions("BusClass00000000000001") {
			if !a.Revoked {
				out[a.Recipient]++
			}
		}
		return out
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for len(holders()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d learners hold the badge, want %d", len(holders()), n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	p := start(t, env, "run")
	// The group starts at "newest": wait until it exists before the first entry.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if g, err := bus.XInfoGroups(context.Background(), stream).Result(); err == nil && len(g) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("consumer group never created")
		}
		time.Sleep(50 * time.Millisecond)
	}
	xaddCertificate(t, bus, stream, "bus-1", 101)
	xaddCertificate(t, bus, stream, "bus-1", 101) // the producer's duplicate
	xaddCertificate(t, bus, stream, "bus-2", 102)
	waitFor(2)
	p.Stop(t, 30*time.Second)

	// Written while the bridge was down: processed after the restart, nothing skipped.
	xaddCertificate(t, bus, stream, "bus-3", 103)
	xaddCertificate(t, bus, stream, "bus-1", 101)
	p.Restart(t)
	waitFor(3)
	time.Sleep(3 * time.Second) // past BRIDGE_SETTLE: verification reconciles ran
	for email, n := range holders() {
		if n != 1 {
			t.Fatalf("%s holds %d assertions, want 1", email, n)
		}
	}
	g, _ := bus.XInfoGroups(context.Background(), stream).Result()
	if len(g) != 1 || g[0].Pending != 0 || g[0].Lag != 0 {
		t.Fatalf("group state %+v: want everything acknowledged", g)
	}
	p.Stop(t, 30*time.Second)
	assertJSONLogs(t, p.Stderr.String(), "pw-0123456789")
}
