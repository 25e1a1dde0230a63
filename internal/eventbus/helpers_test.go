package eventbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/testutil"
)

const (
	certStream    = "dev-learning-certificate-lifecycle"
	badgesStream  = "dev-learning-badges-lifecycle"
	testGroup     = "badge-bridge"
	exampleEmail  = "alice@example.com"
	badgeAwarded  = "org.openedx.learning.badge.awarded.v1"
	waitTimeout   = 10 * time.Second
	fastBlock     = 50 * time.Millisecond
	fastClaimTick = 200 * time.Millisecond
)

// fakeHandler stands in for the intake: it records each event once by id, as the intake's
// event-id de-duplication does, and counts every call.
type fakeHandler struct {
	mu     sync.Mutex
	calls  map[string]int
	events map[string]edx.Event
	order  []string // event ids in the order they were recorded
	vias   map[string]bool
	fail   int  // fail this many more calls
	block  bool // block until the context ends
	delay  time.Duration
	called chan string // receives each event id handed in, when set (never blocks)
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{calls: map[string]int{}, events: map[string]edx.Event{}, vias: map[string]bool{}}
}

var errQueueDown = errors.New("queue redis: connection refused")

func (h *fakeHandler) Handle(ctx context.Context, ev edx.Event, via string) (intake.Result, error) {
	h.mu.Lock()
	h.calls[ev.ID]++
	h.vias[via] = true
	block, delay, called := h.block, h.delay, h.called
	failing := h.fail > 0
	if failing {
		h.fail--
	}
	h.mu.Unlock()
	if called != nil {
		select {
		case called <- ev.ID:
		default:
		}
	}
	if block {
		<-ctx.Done()
		return intake.Result{}, ctx.Err()
	}
	if failing {
		return intake.Result{}, errQueueDown
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.events[ev.ID]; dup {
		return intake.Result{Status: intake.StatusDuplicate}, nil
	}
	h.events[ev.ID] = ev
	h.order = append(h.order, ev.ID)
	return intake.Result{Status: intake.StatusAccepted}, nil
}

func (h *fakeHandler) recorded() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events)
}

func (h *fakeHandler) event(id string) (edx.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev, ok := h.events[id]
	return ev, ok
}

func (h *fakeHandler) callsFor(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

func (h *fakeHandler) viaValues() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.vias))
}

func (h *fakeHandler) recordedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.order...)
}

// count returns how many lines have the given message.
func countLines(b *testutil.Output, msg string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			n++
		}
	}
	return n
}

func newTestLogger(t *testing.T) (*slog.Logger, *testutil.Output) {
	t.Helper()
	b := &testutil.Output{}
	t.Cleanup(func() {
		if s := b.String(); strings.Contains(s, "@example.com") {
			t.Errorf("an e-mail address was logged:\n%s", s)
		}
		if t.Failed() {
			t.Logf("consumer log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func testConfig(name string, streams ...string) Config {
	return Config{
		Streams: streams, Group: testGroup, Start: StartNewest, Consumer: name,
		Block: fastBlock, Count: 8, ClaimInterval: fastClaimTick, ClaimIdle: time.Minute,
	}
}

// running is a consumer whose Run goroutine the test controls.
type running struct {
	*Consumer
	log      *testutil.Output
	stop     func()
	finished chan struct{}
}

// exited reports whether Run has returned.
func (r *running) exited() bool {
	select {
	case <-r.finished:
		return true
	default:
		return false
	}
}

// start runs a consumer until the returned stop (also called at cleanup). Run must return nil.
func start(t *testing.T, bus, own redis.UniversalClient, h Handler, cfg Config) *running {
	t.Helper()
	return startWith(t, bus, own, h, cfg, nil)
}

// startWith is start with setup applied to the consumer before it runs.
func startWith(t *testing.T, bus, own redis.UniversalClient, h Handler, cfg Config, setup func(*Consumer)) *running {
	t.Helper()
	log, buf := newTestLogger(t)
	c := New(bus, own, h, cfg, log, prometheus.NewRegistry())
	if setup != nil {
		setup(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var runErr error
	go func() {
		defer close(finished)
		runErr = c.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-finished:
				if runErr != nil {
					t.Errorf("Run returned %v, want nil", runErr)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return &running{Consumer: c, log: buf, stop: stop, finished: finished}
}

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, waitTimeout, what, cond)
}

// payload reads an openedx-events JSON example of internal/edx/testdata.
func payload(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "edx", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m
}

// entry is an event-bus entry as openedx/event-bus-redis writes it, fields in its order.
type entry struct {
	eventType string
	id        string
	data      []byte
}

func avroEntry(t *testing.T, file, id string) entry {
	t.Helper()
	p := payload(t, file)
	eventType := p["event_metadata"].(map[string]any)["event_type"].(string)
	data, err := edx.EncodeAvro(eventType, p)
	if err != nil {
		t.Fatal(err)
	}
	return entry{eventType: eventType, id: id, data: data}
}

func certEntry(t *testing.T, id string) entry    { return avroEntry(t, "certificate-created.json", id) }
func passingEntry(t *testing.T, id string) entry { return avroEntry(t, "passing-status.json", id) }

// produce writes entries the way the producer does: XADD <stream> MAXLEN ~ 10000 * …
func produce(t *testing.T, c redis.UniversalClient, stream string, entries ...entry) []string {
	t.Helper()
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		id, err := c.XAdd(context.Background(), &redis.XAddArgs{
			Stream: stream, MaxLen: 10000, Approx: true,
			Values: []any{
				"type", e.eventType,
				"id", e.id,
				"source", "openedx/lms/web",
				"time", time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00"),
				"minorversion", "0",
				"sourcehost", "lms-1",
				"sourcelib", "11.2.0",
				"event_data", e.data,
			},
		}).Result()
		if err != nil {
			t.Fatalf("XADD %s: %v", stream, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func pendingCount(t *testing.T, c redis.UniversalClient, stream string) int64 {
	t.Helper()
	p, err := c.XPending(context.Background(), stream, testGroup).Result()
	if err != nil {
		t.Fatalf("XPENDING %s: %v", stream, err)
	}
	return p.Count
}

func groupExists(c redis.UniversalClient, stream string) bool {
	groups, err := c.XInfoGroups(context.Background(), stream).Result()
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g.Name == testGroup {
			return true
		}
	}
	return false
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func (r *running) outcomes(t *testing.T, stream, outcome string) float64 {
	t.Helper()
	return counterValue(t, r.metrics.entries.WithLabelValues(stream, outcome))
}

func redisPair(t *testing.T) (bus, own *redis.Client, busServer, ownServer *testutil.RedisServer) {
	t.Helper()
	busServer, ownServer = testutil.StartRedis(t), testutil.StartRedis(t)
	return busServer.Client(t), ownServer.Client(t), busServer, ownServer
}

func eventID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }
